"""Kuzzle's vault: files written by the real kuzzle-vault npm package (what Kourou runs) are
read into `context.secrets`, in the server and in hook worker processes; every way of getting
it wrong stops `check` and `run` with the same line; no secret reaches a log or getConfig."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from sanic_gateway import vault
from tests.test_cli import wait_for

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "sanic-gateway")
KUZZLE_VAULT = ROOT / "node_modules" / "kuzzle-vault"
needs_node = pytest.mark.skipif(shutil.which("node") is None or not KUZZLE_VAULT.is_dir(),
                                reason="node and node_modules/kuzzle-vault (npm ci)")

KEY = "correct horse battery staple"
SECRETS = {"aws": {"secretKeyId": "AKIA-very-secret-id", "region": "eu-west-3"},
           "cloudinaryKey": "ho-chi-minh-city-key", "unicode": "clé ✓ 鍵"}
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in (vault.KEY_ENV, vault.FILE_ENV)}


def node(script: str, **env: str) -> str:
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60,
                          env={**CLEAN_ENV, "NODE_PATH": str(ROOT / "node_modules"), **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


def kuzzle_encrypt(secrets: dict, key: str, out: Path) -> None:
    """What `kourou vault:encrypt` does: kuzzle-vault's Cryptonomicon.encryptObject."""
    node("const {Cryptonomicon} = require('kuzzle-vault');"
         "const fs = require('fs');"
         f"const c = new Cryptonomicon({json.dumps(key)});"
         f"fs.writeFileSync({json.dumps(str(out))}, "
         f"JSON.stringify(c.encryptObject({json.dumps(secrets)}), null, 2));")


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**CLEAN_ENV, **env})


# -- the format ---------------------------------------------------------------------------------

@needs_node
def test_a_file_kuzzle_vault_wrote_decrypts_here(tmp_path):
    kuzzle_encrypt(SECRETS, KEY, tmp_path / "secrets.enc.json")
    written = json.loads((tmp_path / "secrets.enc.json").read_text())
    assert written["aws"]["region"].count(".") == 1  # <ciphertext hex>.<iv hex>
    assert vault.load({}, tmp_path, {vault.KEY_ENV: KEY}) == SECRETS


@needs_node
def test_a_file_written_here_decrypts_with_kuzzle_vault(tmp_path):
    (tmp_path / "secrets.json").write_text(json.dumps({**SECRETS, "list": ["a", "b"]}))
    done = cli("vault", "encrypt", "secrets.json", cwd=tmp_path, KUZZLE_VAULT_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "secrets encrypted into secrets.enc.json\n"
    assert KEY not in done.stdout + done.stderr
    out = node(
        "const {Vault} = require('kuzzle-vault');"
        f"process.chdir({json.dumps(str(tmp_path))});"
        "console.log(JSON.stringify(new Vault().decrypt('secrets.enc.json')));",
        KUZZLE_VAULT_KEY=KEY)
    assert json.loads(out) == {**SECRETS, "list": ["a", "b"]}


def test_vault_cli_encrypt_and_decrypt_round_trip(tmp_path):
    (tmp_path / "s.yaml").write_text("db:\n  password: hunter2-hunter2\n")
    assert cli("vault", "encrypt", "s.yaml", cwd=tmp_path, K=KEY).returncode == 2
    done = cli("vault", "encrypt", "s.yaml", "--key-env", "K", cwd=tmp_path, K=KEY)
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in (tmp_path / "s.enc.yaml").read_text()
    shown = cli("vault", "decrypt", "s.enc.yaml", "--key-env", "K", cwd=tmp_path, K=KEY)
    assert json.loads(shown.stdout) == {"db": {"password": "hunter2-hunter2"}}
    again = cli("vault", "encrypt", "s.yaml", "--key-env", "K", cwd=tmp_path, K=KEY)
    assert again.returncode == 2
    assert again.stderr == "sanic-gateway: s.enc.yaml exists; pass --force to overwrite it\n"
    written = cli("vault", "decrypt", "s.enc.yaml", "--key-env", "K", "--out", "plain.json",
                  cwd=tmp_path, K=KEY)
    assert written.returncode == 0
    assert (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o600
    wrong = cli("vault", "decrypt", "s.enc.yaml", "--key-env", "K", cwd=tmp_path, K="nope")
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr == ("sanic-gateway: cannot decrypt s.enc.yaml with the key in K: "
                            "wrong key or corrupted file\n")


def test_vault_cli_refuses_without_a_key_and_values_it_cannot_store(tmp_path):
    (tmp_path / "s.json").write_text('{"port": 5432}')
    done = cli("vault", "encrypt", "s.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("sanic-gateway: KUZZLE_VAULT_KEY is not set: put the vault key in "
                           "it (or name another variable with --key-env)\n")
    done = cli("vault", "encrypt", "s.json", cwd=tmp_path, KUZZLE_VAULT_KEY=KEY)
    assert done.returncode == 2
    assert done.stderr == ("sanic-gateway: port: only strings, objects and arrays can be "
                           "stored (got 5432); write it as a string\n")


# -- check and run: the same line, exit 2 -------------------------------------------------------

def _refused(tmp_path: Path, yaml_text: str, line: str, **env: str) -> None:
    (tmp_path / "gateway.yaml").write_text(yaml_text)
    for command in (["check"], ["run", "--port", "0"]):
        done = cli(*command, cwd=tmp_path, **env)
        assert done.returncode == 2, (command, done.stderr)
        assert line in done.stderr.splitlines(), (command, done.stderr)
        assert "Traceback" not in done.stderr
        assert KEY not in done.stderr + done.stdout
        assert not any(v in done.stderr for v in ("AKIA-very-secret-id", "ho-chi-minh"))


def _encrypted(tmp_path: Path, name: str = "secrets.enc.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(vault.encrypt_tree(SECRETS, vault.key_hash(KEY))))
    return path


def test_a_file_without_its_key_is_refused(tmp_path):
    file = _encrypted(tmp_path)
    _refused(tmp_path, 'storage: "sqlite:///:memory:"\n',
             f"gateway.yaml: vault: secrets file {file} found but KUZZLE_VAULT_KEY is not set: "
             "give the vault key in KUZZLE_VAULT_KEY")


def test_a_wrong_key_is_refused_without_showing_it(tmp_path):
    file = _encrypted(tmp_path, "prod.enc.json")
    _refused(tmp_path, "vault:\n  file: prod.enc.json\n  key_env: PROD_VAULT_KEY\n",
             f"gateway.yaml:1: vault: cannot decrypt {file} with the key in "
             "PROD_VAULT_KEY: wrong key or corrupted file",
             PROD_VAULT_KEY="not " + KEY)


def test_a_named_file_that_is_missing_is_refused(tmp_path):
    _refused(tmp_path, "vault: {file: nowhere.enc.json}\n",
             f"gateway.yaml:1: vault.file: secrets file {tmp_path / 'nowhere.enc.json'} "
             "(vault.file): not found", KUZZLE_VAULT_KEY=KEY)
    _refused(tmp_path, "{}\n",
             f"gateway.yaml: vault: secrets file {tmp_path / 'elsewhere.json'} "
             "(KUZZLE_SECRETS_FILE): not found",
             KUZZLE_VAULT_KEY=KEY, KUZZLE_SECRETS_FILE="elsewhere.json")


def test_a_key_without_a_file_is_refused(tmp_path):
    _refused(tmp_path, "{}\n",
             f"gateway.yaml: vault: KUZZLE_VAULT_KEY is set but there is no secrets file at "
             f"{tmp_path / 'secrets.enc.json'}: write it (sanic-gateway vault encrypt) or "
             "unset KUZZLE_VAULT_KEY", KUZZLE_VAULT_KEY=KEY)


def test_a_file_that_is_not_json_or_not_encrypted_is_refused(tmp_path):
    (tmp_path / "s.enc.yaml").write_text("a: [")
    _refused(tmp_path, "vault: {file: s.enc.yaml}\n",
             f"gateway.yaml:1: vault.file: {tmp_path / 's.enc.yaml'} is not YAML (line 1)",
             KUZZLE_VAULT_KEY=KEY)
    (tmp_path / "secrets.enc.json").write_text('{"a": ')
    _refused(tmp_path, "{}\n",
             f"gateway.yaml: vault: {tmp_path / 'secrets.enc.json'} is not JSON (line 1, "
             "column 7: Expecting value)", KUZZLE_VAULT_KEY=KEY)
    (tmp_path / "secrets.enc.json").write_text('{"db": {"password": "in clear"}}')
    _refused(tmp_path, "{}\n",
             "gateway.yaml: vault: db.password is not an encrypted value (not <ciphertext>.<iv> "
             "in hexadecimal): corrupted file", KUZZLE_VAULT_KEY=KEY)


def test_neither_file_nor_key_gives_empty_secrets_and_check_says_what_it_read(tmp_path):
    (tmp_path / "gateway.yaml").write_text('storage: "sqlite:///:memory:"\n')
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 0 and "secrets:" not in done.stdout
    _encrypted(tmp_path)
    done = cli("check", cwd=tmp_path, KUZZLE_VAULT_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert (f"secrets: 4 value(s) decrypted from {tmp_path / 'secrets.enc.json'}"
            in done.stdout.splitlines())
    assert "AKIA" not in done.stdout


# -- served: context.secrets in the server and in hook worker processes -------------------------

PLUGIN = """\
    import json
    import os


    class Vaulty:
        def init(self, config, context):
            self.context = context
            context.log.debug("the AWS key is %s", context.secrets["aws"]["secretKeyId"])
            try:
                context.secrets["aws"]["region"] = "changed"
                frozen = False
            except TypeError:
                frozen = True
            where = "server" if context.accessors is not None else "worker"
            with open(os.path.join(config["out"], f"{where}-{os.getpid()}.json"), "w") as out:
                json.dump({"secrets": json.loads(json.dumps(
                    context.secrets, default=dict)), "frozen": frozen}, out)

        def secrets(self, request):
            return {"region": self.context.secrets["aws"]["region"],
                    "unicode": self.context.secrets["unicode"]}

        def seen(self, payload):
            pass
"""


@needs_node
def test_plugins_get_the_secrets_kourou_encrypted_and_no_log_shows_them(tmp_path):
    from tests.test_cli import free_port

    kuzzle_encrypt(SECRETS, KEY, tmp_path / "secrets.enc.json")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "vaulty.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "gateway.yaml").write_text(textwrap.dedent(f"""\
        storage: "sqlite:///:memory:"
        plugins:
          vaulty:
            module: vaulty:Vaulty
            threads: 1
            config: {{out: "{out}"}}
            hooks:
              "request:onSuccess": seen
            controllers:
              api: {{secrets: secrets}}
            routes:
              - {{verb: get, url: /secrets, controller: api, action: secrets}}
    """))
    port = free_port()
    proc = subprocess.Popen([SCRIPT, "run", "--dev", "--port", str(port)], cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**CLEAN_ENV, "KUZZLE_VAULT_KEY": KEY})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/_now", proc)
        answer = httpx.get(f"{base}/_/vaulty/secrets")
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == {"region": "eu-west-3", "unicode": "clé ✓ 鍵"}
        config = httpx.get(f"{base}/_getConfig").text
        assert "secretKeyId" not in config and "AKIA" not in config and KEY not in config
    finally:
        proc.send_signal(signal.SIGINT)
        logs, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, logs
    seen = {p.name.split("-")[0]: json.loads(p.read_text()) for p in out.iterdir()}
    assert set(seen) == {"server", "worker"}  # the init of the server and of the worker
    for got in seen.values():
        assert got == {"secrets": SECRETS, "frozen": True}
    assert "the AWS key is [redacted]" in logs  # DEBUG (--dev), masked
    for secret in (KEY, "AKIA-very-secret-id", "ho-chi-minh-city-key"):
        assert secret not in logs


def test_key_env_must_name_a_variable_and_is_the_only_error_then(tmp_path):
    _encrypted(tmp_path)  # read with the default key_env, it would be a second error
    (tmp_path / "gateway.yaml").write_text("vault: {key_env: my key}\n")
    done = cli("check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("gateway.yaml:1: vault.key_env: ")
    assert "1 error(s) in gateway.yaml" in done.stderr
