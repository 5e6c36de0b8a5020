"""What the API keeps of a request sent with an Idempotency-Key: a hash that tells a retry (same method, path,
parameters and body, in any key order) from another request, and that holds no password."""
from __future__ import annotations

from engine.domain.principal import Principal
from engine.web.api import operations
from engine.web.api.declaration import Call
from engine.web.api.resource import request_hash

OPERATIONS = {operation.operation_id: operation for operation in operations()}
ADMIN = Principal("ada", "admin")


def hashed(operation_id: str, body: dict, path: str = "/api/v1/users") -> str:
    return request_hash("POST", path, OPERATIONS[operation_id], Call({}, body, ADMIN, "127.0.0.1"))


def test_a_retry_has_the_same_hash_another_request_another() -> None:
    first = hashed("addUser", {"name": "otto", "role": "operator", "password": "long enough"})
    assert hashed("addUser", {"role": "operator", "password": "long enough", "name": "otto"}) == first
    assert hashed("addUser", {"name": "otto", "role": "admin", "password": "long enough"}) != first
    assert hashed("addUser", {"name": "otto", "role": "operator", "password": "long enough"}, "/api/v1/x") != first


def test_the_password_is_not_part_of_the_hash() -> None:
    """Kept unsalted and fast, a hash over the password would undo its scrypt: it is left out."""
    assert (hashed("addUser", {"name": "otto", "role": "viewer", "password": "one password"})
            == hashed("addUser", {"name": "otto", "role": "viewer", "password": "another one"}))
    assert (hashed("createOrder", {"placer_order_number": "P1", "password": "x"}, "/api/v1/orders")
            != hashed("createOrder", {"placer_order_number": "P1", "password": "y"}, "/api/v1/orders"))
