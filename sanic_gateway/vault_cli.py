"""`sanic-gateway vault encrypt|decrypt`: write and read kuzzle-vault files without Node.

The key is only ever read from an environment variable (a command-line argument would land
in the shell's history and in `ps`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import vault


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "vault", help="encrypt or decrypt a secrets file (Kuzzle's vault format)",
        description="Write or read the encrypted secrets file plugins get as context.secrets, "
                    "in the format of Kuzzle's vault (kourou vault:encrypt). The key is read "
                    f"from ${vault.KEY_ENV}, or the variable --key-env names.")
    actions = parser.add_subparsers(dest="vault_action", metavar="ACTION", required=True)
    encrypt = actions.add_parser(
        "encrypt", help="encrypt every string of a JSON or YAML file",
        description="Encrypt every string value of FILE (names stay in clear) and write "
                    "the result, by default beside it as NAME.enc.json.")
    encrypt.add_argument("file", metavar="FILE", help="the secrets in clear (.json, .yaml)")
    decrypt = actions.add_parser(
        "decrypt", help="print (or write) the secrets of an encrypted file",
        description="Decrypt FILE and print it as JSON, or write it to --out (mode 0600).")
    decrypt.add_argument("file", metavar="FILE", help="the encrypted secrets file")
    for action in (encrypt, decrypt):
        action.add_argument("--out", metavar="PATH", help="where to write the result")
        action.add_argument("--force", action="store_true", help="overwrite --out if it exists")
        action.add_argument("--key-env", default=vault.KEY_ENV, metavar="NAME",
                            help=f"the environment variable holding the key "
                                 f"(default: {vault.KEY_ENV})")


def encrypted_name(path: Path) -> Path:
    """secrets.json -> secrets.enc.json, as Kourou names it."""
    suffix = path.suffix if path.suffix.lower() in (".json", ".yaml", ".yml") else ".json"
    stem = path.stem if path.suffix.lower() in (".json", ".yaml", ".yml") else path.name
    return path.with_name(f"{stem}.enc{suffix}")


def _dump(document: Any, path: Path | None) -> str:
    if path is not None and path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _write(path: Path, text: str, force: bool, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise vault.VaultError(f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise vault.VaultError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def run(args: argparse.Namespace) -> int:
    """0, or 2 with one line on stderr (never the key nor a value)."""
    try:
        key = os.environ.get(args.key_env) or ""
        if not key:
            raise vault.VaultError(f"{args.key_env} is not set: put the vault key in it "
                                   "(or name another variable with --key-env)")
        source = Path(args.file)
        if not source.is_file():
            raise vault.VaultError(f"{source}: file not found")
        if args.vault_action == "encrypt":
            out = Path(args.out) if args.out else encrypted_name(source)
            document = vault.encrypt_tree(vault.read_document(source), vault.key_hash(key))
            _write(out, _dump(document, out), args.force, 0o644)
            print(f"secrets encrypted into {out}")
            return 0
        secrets = vault.decrypt_file(source, key, args.key_env)
        if args.out:
            _write(Path(args.out), _dump(secrets, Path(args.out)), args.force, 0o600)
            print(f"secrets decrypted into {args.out}")
        else:
            sys.stdout.write(_dump(secrets, None))
        return 0
    except vault.VaultError as exc:
        print(f"sanic-gateway: {exc.message}", file=sys.stderr)
        return 2
