"""Who made an HTTP request, and what their role allows (issue 13: viewer, operator, admin)."""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")   # each role may do everything the roles before it may


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, needed: str) -> bool:
        """Whether this role covers ``needed`` (an admin may operate, an operator may view)."""
        return ROLES.index(self.role) >= ROLES.index(needed)
