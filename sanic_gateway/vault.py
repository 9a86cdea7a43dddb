"""Kuzzle's vault: an encrypted secrets file, decrypted at start, given to plugins as
`context.secrets`.

The format is kuzzle-vault's (what `kourou vault:encrypt` and `vault:add` write), so a file
made for Kuzzle works here and the other way round: a JSON (or YAML) document whose names stay
in clear and whose string values are each `<ciphertext hex>.<iv hex>`, AES-256-CBC with PKCS#7
padding, a fresh 16-byte IV per value, and as key the SHA-256 of the vault key's UTF-8 bytes.

Where the file and the key come from, and when starting is refused, follow Kuzzle 2's own
rules (lib/kuzzle/vault.js): a file found without a key, a key without a file, or a file named
explicitly but missing, all stop the start. Neither file nor key: no secrets (`{}`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

DEFAULT_FILE = "secrets.enc.json"  # beside gateway.yaml (Kuzzle: config/secrets.enc.json)
KEY_ENV = "KUZZLE_VAULT_KEY"
FILE_ENV = "KUZZLE_SECRETS_FILE"
WRONG_KEY = "wrong key or corrupted file"


class VaultError(Exception):
    """The secrets cannot be loaded: the message is for the user, and never holds the key nor
    a decrypted value. `file_named` says the problem is with a file gateway.yaml names."""

    def __init__(self, message: str, *, file_named: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.file_named = file_named


class _Undecryptable(Exception):
    pass


def key_hash(key: str) -> bytes:
    """kuzzle-vault's AES key: SHA-256 of the vault key."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def encrypt_string(value: str, key: bytes) -> str:
    iv = _random.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(value.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return f"{(encryptor.update(plain) + encryptor.finalize()).hex()}.{iv.hex()}"


def decrypt_string(value: str, key: bytes) -> str:
    """Raises ValueError for a value not in the format, _Undecryptable for a wrong key (bad
    padding or bytes that are not UTF-8: Node would decode those to garbage silently)."""
    data_hex, dot, iv_hex = value.partition(".")
    if not dot or not data_hex or len(iv_hex) != 32:
        raise ValueError("not <ciphertext>.<iv> in hexadecimal")
    try:
        data, iv = bytes.fromhex(data_hex), bytes.fromhex(iv_hex)
    except ValueError:
        raise ValueError("not hexadecimal") from None
    if len(data) % 16:
        raise ValueError("ciphertext is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except ValueError:  # bad padding, or UnicodeDecodeError
        raise _Undecryptable from None


def _where(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def decrypt_tree(tree: Any, key: bytes, path: tuple[Any, ...] = ()) -> Any:
    """Strings decrypted, objects and arrays walked; other values (numbers, booleans, null:
    kuzzle-vault never writes them) kept as they are."""
    if isinstance(tree, str):
        try:
            return decrypt_string(tree, key)
        except ValueError as exc:
            raise VaultError(f"{_where(path)} is not an encrypted value ({exc}): "
                             "corrupted file") from None
    if isinstance(tree, Mapping):
        return {k: decrypt_tree(v, key, (*path, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [decrypt_tree(v, key, (*path, i)) for i, v in enumerate(tree)]
    return tree


def encrypt_tree(tree: Any, key: bytes, path: tuple[Any, ...] = ()) -> Any:
    """Strings encrypted, objects and arrays walked. Anything else is refused: Kuzzle would
    read a number back as `{}`."""
    if isinstance(tree, str):
        return encrypt_string(tree, key)
    if isinstance(tree, Mapping):
        return {k: encrypt_tree(v, key, (*path, k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [encrypt_tree(v, key, (*path, i)) for i, v in enumerate(tree)]
    raise VaultError(f"{_where(path)}: only strings, objects and arrays can be stored "
                     f"(got {json.dumps(tree)}); write it as a string")


def read_document(path: Path) -> Any:
    """The file's JSON, or YAML for a `.yaml`/`.yml` name (kuzzle-vault's rule)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise VaultError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise VaultError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            raise VaultError(f"{path} is not YAML{at}") from None
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VaultError(f"{path} is not JSON (line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg})") from None
    if not isinstance(document, dict):
        raise VaultError(f"{path}: the secrets must be an object of names and values")
    return document


def decrypt_file(path: Path, key: str, key_env: str) -> dict[str, Any]:
    try:
        return decrypt_tree(read_document(path), key_hash(key))
    except _Undecryptable:
        raise VaultError(f"cannot decrypt {path} with the key in {key_env}: "
                         f"{WRONG_KEY}") from None


@dataclass(frozen=True)
class Source:
    """Where the secrets come from: the file, whether it was named (gateway.yaml or
    KUZZLE_SECRETS_FILE) rather than the default, and the key (empty: none)."""

    file: Path
    named_by: str | None  # "vault.file", FILE_ENV, or None for the default
    key_env: str
    key: str


def source(spec: Mapping[str, Any], base_dir: Path,
           env: Mapping[str, str] | None = None) -> Source:
    """vault.file (relative to gateway.yaml), else $KUZZLE_SECRETS_FILE (relative to the
    current directory), else secrets.enc.json beside gateway.yaml; the key from the
    environment variable vault.key_env names."""
    env = os.environ if env is None else env
    key_env = spec.get("key_env") or KEY_ENV
    if spec.get("file"):
        file, named = base_dir / str(spec["file"]), "vault.file"
    elif env.get(FILE_ENV):
        file, named = Path(env[FILE_ENV]).absolute(), FILE_ENV
    else:
        file, named = base_dir / DEFAULT_FILE, None
    return Source(file, named, key_env, env.get(key_env) or "")


def load(spec: Mapping[str, Any], base_dir: Path,
         env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The decrypted secrets (`{}` when there is neither file nor key), or VaultError."""
    where = source(spec, base_dir, env)
    found = where.file.is_file()
    if where.named_by and not found:
        what = "is a directory" if where.file.is_dir() else "not found"
        raise VaultError(f"secrets file {where.file} ({where.named_by}): {what}",
                         file_named=where.named_by == "vault.file")
    if found and not where.key:
        raise VaultError(f"secrets file {where.file} found but {where.key_env} is not set: "
                         f"give the vault key in {where.key_env}",
                         file_named=where.named_by == "vault.file")
    if not found and where.key:
        raise VaultError(f"{where.key_env} is set but there is no secrets file at "
                         f"{where.file}: write it (sanic-gateway vault encrypt) or unset "
                         f"{where.key_env}")
    if not found:
        return {}
    try:
        return decrypt_file(where.file, where.key, where.key_env)
    except VaultError as exc:  # the file's fault (not JSON, not encrypted), or the key's
        exc.file_named = where.named_by == "vault.file" and WRONG_KEY not in exc.message
        raise


def leaves(tree: Any) -> list[str]:
    """Every string in the secrets, to keep out of logs."""
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, Mapping):
        return [s for v in tree.values() for s in leaves(v)]
    if isinstance(tree, list | tuple):
        return [s for v in tree for s in leaves(v)]
    return []
