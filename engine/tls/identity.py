"""The names a peer certificate proves: its subject CN(s) and its DNS and IP subject alternative names."""
from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID


def certificate_names(certificate: x509.Certificate) -> tuple[str, ...]:
    names = [str(attribute.value) for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        alternative = None
    if alternative is not None:
        names += alternative.get_values_for_type(x509.DNSName)
        names += [str(address) for address in alternative.get_values_for_type(x509.IPAddress)]
    return tuple(dict.fromkeys(names))   # in order, once each
