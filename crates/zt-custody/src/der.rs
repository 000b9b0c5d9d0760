//! The two DER shapes a remote key hands over: a P-256 SubjectPublicKeyInfo (KMS
//! `GetPublicKey`) or a DER OCTET STRING around the EC point (PKCS#11 `CKA_EC_POINT`), and raw
//! `r || s` ECDSA signatures (PKCS#11 `CKM_ECDSA`) that records carry as DER.

/// The fixed prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1) before the
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed point of a P-256 SubjectPublicKeyInfo; `None` for any other key.
pub fn p256_point_from_spki(spki: &[u8]) -> Option<&[u8]> {
    let point = spki.strip_prefix(P256_SPKI_PREFIX.as_slice())?;
    (point.len() == 65 && point.first() == Some(&4)).then_some(point)
}

/// The uncompressed point of a `CKA_EC_POINT` value: DER OCTET STRING (the standard) or the
/// bare point (some tokens).
pub fn p256_point_from_ec_point(value: &[u8]) -> Option<&[u8]> {
    let point = match value {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        bare => bare,
    };
    (point.len() == 65 && point.first() == Some(&4)).then_some(point)
}

/// DER `ECDSA-Sig-Value` from a raw P-256 `r || s` (64 bytes).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let (r, s) = raw.split_at(32);
    let (r, s) = (der_integer(r), der_integer(s));
    let body_len = r.len() + s.len();
    let mut out = Vec::with_capacity(body_len + 2);
    out.push(0x30);
    // At most 2 * (2 + 33) = 70 bytes: always the short length form.
    out.push(u8::try_from(body_len).ok()?);
    out.extend_from_slice(&r);
    out.extend_from_slice(&s);
    Some(out)
}

/// A DER INTEGER of an unsigned big-endian number: leading zeros dropped, one zero added when
/// the top bit is set.
fn der_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed = match bytes.iter().position(|b| *b != 0) {
        Some(first) => bytes.get(first..).unwrap_or_default(),
        None => &[0],
    };
    let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
    let len = trimmed.len() + usize::from(pad);
    let mut out = Vec::with_capacity(len + 2);
    out.push(0x02);
    out.push(u8::try_from(len).unwrap_or(u8::MAX));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    #[test]
    fn raw_signatures_become_der_that_verifies() {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let spki = key.public_key().as_der().unwrap();
        assert_eq!(
            p256_point_from_spki(spki.as_ref()).unwrap(),
            point.as_slice()
        );
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend_from_slice(&point);
        assert_eq!(
            p256_point_from_ec_point(&wrapped).unwrap(),
            point.as_slice()
        );
        // Enough signatures that some have r or s with the top bit set or a leading zero.
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for i in 0..64u32 {
            let message = i.to_be_bytes();
            let raw = key.sign(&rng, &message).unwrap();
            let der = ecdsa_raw_to_der(raw.as_ref()).unwrap();
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
                .verify(&message, &der)
                .unwrap();
        }
        assert!(ecdsa_raw_to_der(&[0; 63]).is_none());
        assert!(p256_point_from_spki(&[0; 91]).is_none());
    }

    #[test]
    fn small_integers_keep_their_minimal_form() {
        assert_eq!(der_integer(&[0, 0, 1]), vec![2, 1, 1]);
        assert_eq!(der_integer(&[0, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(der_integer(&[0, 0]), vec![2, 1, 0]);
    }
}
