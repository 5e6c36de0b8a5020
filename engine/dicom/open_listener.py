"""Fail closed: a DICOM listener that the network can reach starts plain, or open to any calling AE, only
when the configuration says so in so many words.

Checked before any DICOM listener opens (``app.py``).  Refused (the engine does not start, saying why and
what to write): the plain port on a non-loopback address unless ``dicom.tls: off``; ``allow_any_ae`` on a
non-loopback address unless ``dicom.allow_any_ae_on_network: true``; a TLS port without a certificate;
a known AE that names a certificate while no TLS port verifies client certificates.  Spelled out, the
first two start with a security warning.
"""
from __future__ import annotations

from ..config import DicomConfig
from ..web.auth import is_loopback

__all__ = ["DicomListenerRefused", "is_loopback", "check_dicom_listeners"]


class DicomListenerRefused(RuntimeError):
    """The DICOM settings would expose the listener in a way the configuration does not spell out."""


def check_dicom_listeners(dicom: DicomConfig, certificates_named: list[str]) -> list[str]:
    """Raise DicomListenerRefused with every problem; else return the security warnings to log at start.
    ``certificates_named``: the known AEs whose entry names a certificate."""
    exposed = not is_loopback(dicom.host)
    where = dicom.host or "*"
    tls = dicom.tls
    problems, warnings = [], []
    if dicom.tls_port > 0 and not tls.enabled:
        problems.append(f"dicom.tls_port {dicom.tls_port} needs dicom.tls with cert and key"
                        + (" (dicom.tls says off)" if tls.off else ""))
    if dicom.port >= 0 and exposed:
        if not tls.off:
            problems.append(
                f"plain DICOM listener {where}:{dicom.port} not started: it is not on a loopback address and "
                "has no TLS. Write `dicom.tls: off` to run it plain knowingly, or serve DICOM over TLS only "
                "(dicom.port: -1, dicom.tls_port: 2762, dicom.tls: {cert, key, ca}), or listen on 127.0.0.1")
        else:
            warnings.append(f"plain DICOM listener on {where}:{dicom.port} (dicom.tls: off): associations, "
                            "worklists and images cross the network unencrypted and calling AE titles are unproven")
    if dicom.allow_any_ae and exposed:
        if not dicom.allow_any_ae_on_network:
            problems.append(
                f"allow_any_ae refused on the non-loopback address {where}: any host that reaches it could "
                "store, query and retrieve under any AE title. List the AEs under dicom.aes, or write "
                "`dicom.allow_any_ae_on_network: true` as well to admit unknown AEs knowingly")
        else:
            warnings.append(f"DICOM on {where} admits any calling AE title (allow_any_ae_on_network); each "
                            "unknown AE admitted raises a security event")
    if certificates_named and not (dicom.tls_port > 0 and tls.enabled and tls.ca):
        problems.append(f"dicom.aes {', '.join(sorted(certificates_named))}: `certificate:` needs the TLS port "
                        "(dicom.tls_port) with dicom.tls.ca, which verifies the client certificates named")
    if problems:
        raise DicomListenerRefused("; ".join(problems))
    return warnings
