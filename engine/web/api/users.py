"""Users of the API and console (admin): list, add, remove (the last admin only with force), and API
tokens shown once.  The same rules and audit actions as ``swf users``; a running engine's authorizer
picks a change up within ``http.auth_refresh_seconds``, as it does for ``swf users``."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from ...domain.credentials import MIN_PASSWORD_LENGTH, USER_NAME_PATTERN, hash_password, new_secret, secret_hash
from ...domain.principal import ROLES
from ...store import audit, users
from ...store.database import Transaction
from .declaration import Call, Conflict, NotFound, Operation, Parameter
from .schema import INTEGER, STRING, array, obj, record_json, record_schema

log = logging.getLogger(__name__)

NAME = {"type": "string", "pattern": f"^{USER_NAME_PATTERN}$"}
USER = Parameter("name", "path", NAME, "the user's name", required=True)
ADD_BODY = obj({"name": NAME, "role": {"type": "string", "enum": list(ROLES)},
                "password": {"type": "string", "minLength": MIN_PASSWORD_LENGTH, "maxLength": 1024}})
ADDED = obj({"name": STRING, "role": STRING, "created_at": STRING})
REMOVED = obj({"name": STRING, "role": STRING, "tokens": INTEGER, "users_left": INTEGER})
TOKEN = obj({"name": STRING, "role": STRING, "token_id": INTEGER,
             "token": {"type": "string", "description": "shown this once: only its hash is kept"}})


def list_users(txn: Transaction, _call: Call) -> list[dict[str, Any]]:
    return [record_json(user) for user in users.user_overviews(txn, time.time())]


def hashed_password(call: Call) -> Call:
    """The call with its body's password replaced by the scrypt hash (a quarter second of CPU): run on the
    thread pool before the write, so neither the reactor nor the writer thread waits for it."""
    body = {name: value for name, value in call.body.items() if name != "password"}
    return replace(call, body={**body, "password_hash": hash_password(call.body["password"])})


def add_user(txn: Transaction, call: Call) -> dict[str, Any]:
    name, role = call.body["name"], call.body["role"]
    if users.find_user(txn, name) is not None:
        raise Conflict(f"user {name!r} exists already")
    user = users.add_user(txn, name, role, call.body["password_hash"])
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="user.add", subject=name,
                        before=None, after={"role": role})
    log.info("user %s added with role %s by %s from %s", name, role, call.principal.name, call.client)
    return {"name": user.name, "role": user.role, "created_at": user.created_at}


def _user(txn: Transaction, name: str) -> users.User:
    user = users.find_user(txn, name)
    if user is None:
        raise NotFound(f"no user {name!r}")
    return user


def remove_user(txn: Transaction, call: Call) -> dict[str, Any]:
    user = _user(txn, call.params["name"])
    if user.role == "admin" and users.admin_count(txn) == 1 and call.params["force"] != "true":
        raise Conflict(f"{user.name} is the last admin: without one nobody can manage users or rules over HTTP; "
                       "add another admin first, or remove with force=true")
    tokens = users.remove_user(txn, user)
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="user.remove", subject=user.name,
                        before={"role": user.role, "tokens": tokens}, after=None)
    log.info("user %s removed by %s from %s", user.name, call.principal.name, call.client)
    return {"name": user.name, "role": user.role, "tokens": tokens, "users_left": users.user_count(txn)}


def add_token(txn: Transaction, call: Call) -> dict[str, Any]:
    user = _user(txn, call.params["name"])
    token = new_secret()
    token_id = users.add_token(txn, user, secret_hash(token))
    audit.record_action(txn, actor=call.principal.name, client=call.client, action="user.token", subject=user.name,
                        before=None, after={"token_id": token_id})
    log.info("API token %d made for %s by %s from %s", token_id, user.name, call.principal.name, call.client)
    return {"name": user.name, "role": user.role, "token_id": token_id, "token": token}


OPERATIONS = [
    Operation("GET", "/users", "listUsers", "The users with their roles, API token counts and open sessions.", "admin",
              array(record_schema(users.UserOverview)), list_users),
    Operation("POST", "/users", "addUser", f"Add a user with a role ({', '.join(ROLES)}) and a password of "
              f"{MIN_PASSWORD_LENGTH} characters at least (what `swf users add` does).", "admin", ADDED, add_user,
              body=ADD_BODY, writes=True, errors=(409,), prepare=hashed_password,
              secret_members=("password",)),
    Operation("DELETE", "/users/{name}", "removeUser", "Remove a user with its API tokens and sessions; the last "
              "admin only with force=true (409 otherwise).", "admin", REMOVED, remove_user,
              parameters=(USER, Parameter("force", "query", {"type": "string", "enum": ["true", "false"]},
                                          "true: remove the last admin too")),
              writes=True, errors=(404, 409)),
    Operation("POST", "/users/{name}/tokens", "addUserToken", "A new API token for the user, in the answer this once "
              "(only its hash is kept); send it as 'Authorization: Bearer TOKEN'.", "admin", TOKEN, add_token,
              parameters=(USER,), writes=True, keeps_answer=False, errors=(404,)),
]
