"""TLS files are checked before anything serves with them (engine/tls/files.py), the mllp.senders binding
(engine/domain/senders.py), and a destination's tls: refused at rules load with its file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import TlsConfig
from engine.domain.senders import SenderDirectory, SendersProblem
from engine.outbound.destinations import parse_destination
from engine.tls.files import TlsFileProblem, load_material
from engine.yamlfile import YamlProblem
from tests.pki import CertificateAuthority


@pytest.fixture
def pki(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "pki")


def test_good_files_load_and_describe_their_certificate(pki) -> None:
    issued = pki.issue("engine", "swf-engine.test")
    material = load_material(TlsConfig(cert=str(issued.cert), key=str(issued.key), ca=str(pki.ca)))
    assert material.describe().startswith(f"serial {material.certificate.serial_number:x}, ")
    assert "CN=swf-engine.test" in material.describe() and len(material.authorities) == 1


@pytest.mark.parametrize("problem, said", [
    ("other key", "is not the key of certificate"),
    ("expired", "expired on"),
    ("missing", "No such file"),
    ("no key", "a certificate needs its key"),
    ("garbage ca", "holds no readable PEM certificate"),
])
def test_bad_files_are_refused_naming_the_file(pki, tmp_path, problem: str, said: str) -> None:
    good, other = pki.issue("good", "a"), pki.issue("other", "b")
    config = TlsConfig(cert=str(good.cert), key=str(good.key), ca=str(pki.ca))
    if problem == "other key":
        config.key = str(other.key)
    elif problem == "expired":
        expired = pki.issue("expired", "c", expired=True)
        config.cert, config.key = str(expired.cert), str(expired.key)
    elif problem == "missing":
        config.cert = str(tmp_path / "absent.crt")
    elif problem == "no key":
        config.key = ""
    else:
        (tmp_path / "garbage.pem").write_text("not PEM\n")
        config.ca = str(tmp_path / "garbage.pem")
    with pytest.raises(TlsFileProblem, match=said):
        load_material(config)


def test_a_destination_with_a_broken_tls_file_is_a_rules_problem_at_its_line(pki, tmp_path) -> None:
    spec = {"address": "127.0.0.1:2576", "tls": {"ca": str(tmp_path / "absent.pem"), "verify_hostname": True}}
    with pytest.raises(YamlProblem, match="destination 'archive': tls: CA bundle .*absent.pem"):
        parse_destination("archive", spec, "05-destinations.yaml", 3)
    with pytest.raises(YamlProblem, match="unknown tls key"):
        parse_destination("archive", {"address": "h:1", "tls": {"certificate": "x"}}, "f.yaml", 3)
    destination = parse_destination("archive", {"address": "h:1", "tls": {"ca": str(pki.ca)}}, "f.yaml", 3)
    assert destination.tls is not None and destination.tls.verify_hostname


def test_senders_bound_to_certificates() -> None:
    senders = SenderDirectory.from_config({"RIS": {"certificate": "ris.hospital.example", "facility": "GENHOSP"},
                                           "RIS2": {"certificate": "RIS.hospital.example"}})
    ris = ("ris.hospital.example", "10.0.0.5")
    assert senders.refusal("RIS", "GENHOSP", ris) is None
    assert senders.refusal("RIS2", "ANY", ris) is None            # names compare without case
    assert "MSH-4 'OTHER'" in senders.refusal("RIS", "OTHER", ris)
    assert "it may send as RIS, RIS2" in senders.refusal("HIS", "", ris)
    assert "no sender is bound to it" in senders.refusal("RIS", "GENHOSP", ("modality.example",))
    assert "presented no certificate" in senders.refusal("RIS", "ELSEWHERE", ())   # claimed whatever MSH-4
    assert senders.refusal("HIS", "", ()) is None                 # unbound senders on plain connections
    assert SenderDirectory().refusal("RIS", "", ("anything",)) is None
    with pytest.raises(SendersProblem, match="certificate: NAME"):
        SenderDirectory.from_config({"RIS": "ris.hospital.example"})
