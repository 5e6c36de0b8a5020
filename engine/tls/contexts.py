"""OpenSSL contexts from checked TLS material: the listeners' server context and the outbound links'
client connection creator (Twisted's, with service-identity hostname verification).

Both refuse anything below ``min_version`` (TLS 1.2 unless 1.3 is asked for) and offer only the
configured TLS 1.2 cipher suites (TLS 1.3 suites are OpenSSL's own, all AEAD).
"""
from __future__ import annotations

from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl as twisted_ssl

from ..config import TlsConfig
from .files import TlsMaterial

VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
TWISTED_VERSIONS = {"1.2": twisted_ssl.TLSVersion.TLSv1_2, "1.3": twisted_ssl.TLSVersion.TLSv1_3}
# The X.509 verification results a refused peer certificate most often has (OpenSSL's X509_V_ERR_*).
VERIFY_ERRORS = {
    9: "certificate not yet valid", 10: "certificate expired", 18: "self-signed certificate",
    19: "self-signed certificate in the chain", 20: "issuer not among the trusted CAs (tls.ca)",
    21: "issuer not among the trusted CAs (tls.ca)", 7: "certificate signature invalid",
    23: "certificate revoked", 26: "certificate not meant for this use",
}


class TlsSettingProblem(ValueError):
    """A TLS setting outside what the engine accepts (a protocol version, a cipher string)."""


def _min_version(config: TlsConfig) -> int:
    try:
        return VERSIONS[str(config.min_version)]
    except KeyError:
        raise TlsSettingProblem(f"tls.min_version must be 1.2 or 1.3, not {config.min_version!r}") from None


def verify_problem(errnum: int, depth: int) -> str:
    where = "" if depth == 0 else f" (chain depth {depth})"
    return VERIFY_ERRORS.get(errnum, f"certificate verification error {errnum}") + where


def _verify(connection: SSL.Connection, certificate: Any, errnum: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict stands; a refusal is noted on the connection's protocol for the security event."""
    if not ok:
        protocol = connection.get_app_data()
        note = getattr(protocol, "note_verify_problem", None)
        if note is not None:
            subject = certificate.get_subject().CN if certificate is not None else ""
            note(verify_problem(errnum, depth), subject or "")
    return bool(ok)


def server_context(config: TlsConfig, material: TlsMaterial, session_id: bytes) -> SSL.Context:
    """A listener's context: our chain and key; with ``ca``, client certificates are asked for and checked
    (and required when ``require_client_cert``)."""
    if material.certificate is None or material.key is None:
        raise TlsSettingProblem("a TLS listener needs tls.cert and tls.key")
    if config.require_client_cert and not material.authorities:
        raise TlsSettingProblem("tls.require_client_cert needs tls.ca: the CAs whose client certificates are accepted")
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(_min_version(config))
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    try:
        context.set_cipher_list(config.ciphers.encode("ascii"))
    except (SSL.Error, UnicodeEncodeError):
        raise TlsSettingProblem(f"tls.ciphers {config.ciphers!r} names no cipher suite OpenSSL offers") from None
    context.use_certificate(material.chain[0])
    for extra in material.chain[1:]:
        context.add_extra_chain_cert(extra)
    context.use_privatekey(material.key)
    context.check_privatekey()
    context.set_session_id(session_id)   # resumed sessions with client verification need it
    if material.authorities:
        store = context.get_cert_store()
        assert store is not None
        for authority in material.authorities:
            store.add_cert(crypto.X509.from_cryptography(authority))
            context.add_client_ca(authority)
        mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if config.require_client_cert else 0)
        context.set_verify(mode, _verify)
    else:
        context.set_verify(SSL.VERIFY_NONE)
    return context


def client_creator(config: TlsConfig, material: TlsMaterial, hostname: str) -> Any:
    """An outbound link's connection creator: the server's chain checked against ``ca`` (the system's CAs
    when empty), its name against ``hostname`` unless ``verify_hostname`` is false, our certificate
    presented when one is configured."""
    _min_version(config)   # refuses a version outside 1.2 / 1.3
    extra: dict[str, Any] = {
        "raiseMinimumTo": TWISTED_VERSIONS[str(config.min_version)],
        "acceptableCiphers": twisted_ssl.AcceptableCiphers.fromOpenSSLCipherString(config.ciphers),
    }
    own: twisted_ssl.PrivateCertificate | None = None
    if material.certificate is not None and material.key is not None:
        own = twisted_ssl.PrivateCertificate.fromCertificateAndKeyPair(
            twisted_ssl.Certificate(crypto.X509.from_cryptography(material.certificate)),
            twisted_ssl.KeyPair(crypto.PKey.from_cryptography_key(material.key)))
        extra["extraCertChain"] = [crypto.X509.from_cryptography(c) for c in material.chain[1:]]
    trust = (twisted_ssl.trustRootFromCertificates(
        [twisted_ssl.Certificate(crypto.X509.from_cryptography(c)) for c in material.authorities])
        if material.authorities else twisted_ssl.platformTrust())
    if config.verify_hostname:
        return twisted_ssl.optionsForClientTLS(hostname, trust, own, extraCertificateOptions=extra)
    if own is not None:
        extra.update(privateKey=own.privateKey.original, certificate=own.original)
    return twisted_ssl.CertificateOptions(trustRoot=trust, **extra)
