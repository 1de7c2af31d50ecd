#!/usr/bin/env python3
"""Key pairs and JWTs made by PyJWT, for meshguard's L7 tests.

Reads one JSON request on stdin:
  {"keys": [{"kid": "rsa-1", "kty": "RSA"}, {"kid": "ec-1", "kty": "EC"}, ...],
   "tokens": [{"key": "rsa-1", "alg": "RS256", "claims": {...}, "headers": {...}},
              {"alg": "none", "claims": {...}},
              {"hmac_with_public_key_of": "rsa-1", "claims": {...}}]}
and prints {"jwks": {"keys": [public JWKs]}, "public": {kid: JWK}, "tokens": ["..."]}:
"jwks" holds the keys published (no "publish": false), "public" every key's
public JWK (a key to publish later, as in a key rotation).

Private keys live only in this process: nothing is written to disk.
`kid` of a key goes into its JWK and, unless `headers` says otherwise,
into each token it signs ("kid": null leaves it out).
"""

import base64
import hashlib
import hmac
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate(kty):
    if kty == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kty == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if kty == "EC384":
        return ec.generate_private_key(ec.SECP384R1())
    if kty == "OKP":
        return ed25519.Ed25519PrivateKey.generate()
    raise SystemExit(f"unknown kty {kty}")


def public_jwk(kid, private):
    public = private.public_key()
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    else:
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[
            "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        ].to_jwk(public))
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def main():
    request = json.load(sys.stdin)
    keys = {}
    jwks = []
    public = {}
    for spec in request.get("keys", []):
        private = generate(spec["kty"])
        keys[spec["kid"]] = private
        public[spec["kid"]] = public_jwk(spec["kid"], private)
        if spec.get("publish", True):
            jwks.append(public[spec["kid"]])
    tokens = []
    for spec in request.get("tokens", []):
        claims = spec.get("claims", {})
        headers = dict(spec.get("headers", {}))
        if "hmac_with_public_key_of" in spec:
            # The confusion attack: an HMAC "signed" with the public key as the secret.
            kid = spec["hmac_with_public_key_of"]
            pem = keys[kid].public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            header = {"alg": "HS256", "typ": "JWT", "kid": kid, **headers}
            signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            mac = hmac.new(pem, signing.encode(), hashlib.sha256).digest()
            tokens.append(f"{signing}.{b64(mac)}")
            continue
        if spec.get("alg") == "none":
            tokens.append(jwt.encode(claims, None, algorithm="none", headers=headers or None))
            continue
        kid = spec["key"]
        headers.setdefault("kid", kid)
        if headers["kid"] is None:
            del headers["kid"]
        tokens.append(jwt.encode(claims, keys[kid], algorithm=spec["alg"], headers=headers))
    json.dump({"jwks": {"keys": jwks}, "public": public, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
