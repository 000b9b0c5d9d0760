"""Pinned signing keys: check `audit.kms_signature` over `audit.current_hash`.

The control plane signs the 32 bytes of `current_hash` as a digest with ECDSA P-256
(`ECDSA_SHA_256`, as AWS KMS names it) and publishes its keys as a JWKS at `GET /audit/keys`.
Pin a JWKS saved from a trusted source: keys fetched from the same server prove nothing
against that server. Needs the `cryptography` package (`pip install zt-infra[verify]`).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from . import strict_json
from .errors import EvidenceError

#: The only signature algorithm accepted.
ALGORITHM = "ECDSA_SHA_256"


class PinnedKeys:
    """Public keys by `kid`, from a JWKS (`{"keys": [...]}`)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        try:
            from cryptography.hazmat.primitives.asymmetric import ec
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("pinned keys need `cryptography`: pip install 'zt-infra[verify]'") from error
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list) or not keys:
            raise ValueError("a JWKS needs a non-empty `keys` list")
        self._keys: Dict[str, Any] = {}
        for jwk in keys:
            if not isinstance(jwk, Mapping):
                raise ValueError("every JWKS key must be an object")
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                raise ValueError(f"key `{jwk.get('kid')}` is not an EC P-256 key")
            kid = jwk.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ValueError("every JWKS key needs a `kid`")
            x = int.from_bytes(_b64url(jwk.get("x")), "big")
            y = int.from_bytes(_b64url(jwk.get("y")), "big")
            try:
                self._keys[kid] = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            except ValueError as error:
                raise ValueError(f"key `{kid}` is not a point on P-256") from error

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"]) -> "PinnedKeys":
        """Reads a JWKS saved with `curl URL/audit/keys > keys.json`."""
        return cls(strict_json.loads(Path(path).read_bytes()))

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, audit: Mapping[str, Any]) -> None:
        """Raises `EvidenceError` unless `audit.kms_signature` is a valid signature of
        `audit.current_hash` by a pinned key."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        signature = audit.get("kms_signature")
        if not isinstance(signature, Mapping):
            raise EvidenceError("`audit.kms_signature` is missing")
        if signature.get("algorithm") != ALGORITHM:
            raise EvidenceError(f"signature algorithm `{signature.get('algorithm')}` is not {ALGORITHM}")
        key = self._keys.get(str(signature.get("key_id")))
        if key is None:
            raise EvidenceError(f"signing key `{signature.get('key_id')}` is not pinned")
        try:
            der = base64.b64decode(str(signature.get("signature")), validate=True)
            digest = bytes.fromhex(str(audit.get("current_hash")))
        except (binascii.Error, ValueError) as error:
            raise EvidenceError("the signature or hash is not well encoded") from error
        if len(digest) != 32:
            raise EvidenceError("`audit.current_hash` is not a SHA-256 digest")
        try:
            key.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        except InvalidSignature as error:
            raise EvidenceError("the audit signature does not verify with the pinned key") from error


def _b64url(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("JWKS coordinates must be base64url strings")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("JWKS coordinates must be base64url strings") from error
