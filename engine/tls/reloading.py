"""The TLS context a listener or link uses now, re-read when its files change or on SIGHUP.

New handshakes take ``current``; connections already open keep the context they were made with, so a
certificate renewal drops nothing.  A replacement that does not load (a half-written file, a key that is
not the certificate's, an expired certificate) is refused with one log line and the previous material
keeps serving; it is tried again once any of the files changes again.
"""
from __future__ import annotations

import logging
from typing import Callable, Generic, TypeVar

from OpenSSL import SSL

from ..config import TlsConfig
from .contexts import TlsSettingProblem
from .files import TlsFileProblem, TlsMaterial, load_material, stamps_of

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0   # how often the listeners' files are looked at (a stat each, nothing read unless changed)

Built = TypeVar("Built")
LOAD_PROBLEMS = (TlsFileProblem, TlsSettingProblem, SSL.Error, ValueError)


class ReloadingTls(Generic[Built]):
    """``current`` is built from the files by ``build``; ``reload_if_changed`` / ``reload`` replace it."""

    def __init__(self, label: str, config: TlsConfig, build: Callable[[TlsMaterial], Built]):
        self.label = label
        self.config = config
        self._build = build
        self.material = load_material(config)   # at start a problem is raised: the engine does not start
        self.current: Built = build(self.material)
        self._tried = self.material.stamps
        self.reloads = 0
        self.refusals = 0

    def reload_if_changed(self) -> bool:
        """Re-read when a file's stamp differs from the last attempt's; True when new material serves."""
        if stamps_of(self.config) == self._tried:
            return False
        return self.reload()

    def reload(self) -> bool:
        self._tried = stamps_of(self.config)
        try:
            material = load_material(self.config)
            built = self._build(material)
        except LOAD_PROBLEMS as exc:
            self.refusals += 1
            log.error("%s: new TLS files refused: %s; still serving %s", self.label, exc, self.material.describe())
            return False
        self._tried = material.stamps
        self.material, self.current = material, built
        self.reloads += 1
        log.info("%s: TLS files re-read, new handshakes use %s (open connections keep theirs)", self.label,
                 material.describe())
        return True
