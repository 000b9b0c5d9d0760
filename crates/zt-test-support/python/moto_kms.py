"""A local AWS KMS for the custody tests: moto's server on loopback, with keys made for the test.

moto 5.2 ignores `MessageType` in `Sign` and `Verify` and hashes a `DIGEST` message again
(moto pull request #10202), so its signatures over a digest do not verify as AWS's do. By
default this launcher patches moto to honour `DIGEST` (the message is the SHA-256 digest
itself, signed and verified as prehashed); `--unpatched` runs moto as released, whose wrong
signatures the control plane must catch and refuse.

`--sign-rate R` answers `ThrottlingException` to the `Sign` calls past R a second (a token
bucket holding a tenth of a second's calls), as KMS past an account's request quota does.

Prints one line `READY <port> <arn> [<arn>...]` once the server answers, then serves until
killed. Usage: moto_kms.py [--unpatched] [--keys N] [--sign-rate R]
"""

import argparse
import contextvars
import socket
import sys
import threading
import time

import boto3
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.core.exceptions import JsonRESTError
from moto.kms import responses, utils as kms_utils
from moto.server import ThreadedMotoServer

DIGEST = contextvars.ContextVar("kms_message_type_digest", default=False)


def patch_digest():
    """Make ECDSA Sign and Verify treat a DIGEST message as prehashed."""
    original_sign = kms_utils.ECDSAPrivateKey.sign
    original_verify = kms_utils.ECDSAPrivateKey.verify

    def hash_of(signing_algorithm):
        return {
            "ECDSA_SHA_256": kms_utils.hashes.SHA256(),
            "ECDSA_SHA_384": kms_utils.hashes.SHA384(),
            "ECDSA_SHA_512": kms_utils.hashes.SHA512(),
        }[signing_algorithm]

    def sign(self, message, signing_algorithm):
        if not DIGEST.get():
            return original_sign(self, message, signing_algorithm)
        kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
        algorithm = hash_of(signing_algorithm)
        return self.private_key.sign(message, ec.ECDSA(utils.Prehashed(algorithm)))

    def verify(self, message, signature, signing_algorithm):
        if not DIGEST.get():
            return original_verify(self, message, signature, signing_algorithm)
        kms_utils.validate_signing_algorithm(signing_algorithm, self.valid_signing_algorithms)
        algorithm = hash_of(signing_algorithm)
        try:
            self.private_key.public_key().verify(
                signature, message, ec.ECDSA(utils.Prehashed(algorithm))
            )
            return True
        except kms_utils.InvalidSignature:
            return False

    def with_message_type(handler):
        def wrapped(self):
            token = DIGEST.set(self._get_param("MessageType") == "DIGEST")
            try:
                return handler(self)
            finally:
                DIGEST.reset(token)

        return wrapped

    kms_utils.ECDSAPrivateKey.sign = sign
    kms_utils.ECDSAPrivateKey.verify = verify
    responses.KmsResponse.sign = with_message_type(responses.KmsResponse.sign)
    responses.KmsResponse.verify = with_message_type(responses.KmsResponse.verify)


class Throttled(JsonRESTError):
    def __init__(self):
        super().__init__("ThrottlingException", "Rate exceeded")


def limit_sign_rate(per_second):
    """Answer `ThrottlingException` to the `Sign` calls past `per_second` a second."""
    sign = responses.KmsResponse.sign
    capacity = max(1.0, per_second / 10)
    bucket = {"tokens": capacity, "at": time.monotonic()}
    lock = threading.Lock()

    def limited(self):
        with lock:
            now = time.monotonic()
            bucket["tokens"] = min(capacity, bucket["tokens"] + (now - bucket["at"]) * per_second)
            bucket["at"] = now
            allowed = bucket["tokens"] >= 1
            if allowed:
                bucket["tokens"] -= 1
        if not allowed:
            raise Throttled()
        return sign(self)

    responses.KmsResponse.sign = limited


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unpatched", action="store_true")
    parser.add_argument("--keys", type=int, default=1)
    parser.add_argument("--sign-rate", type=float, default=0)
    args = parser.parse_args()
    if not args.unpatched:
        patch_digest()
    if args.sign_rate:
        limit_sign_rate(args.sign_rate)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    kms = boto3.client(
        "kms",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    arns = []
    for _ in range(args.keys):
        key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
        arns.append(key["KeyMetadata"]["Arn"])
    print("READY", port, *arns, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
