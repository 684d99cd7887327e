"""How each service of the control plane is configured and started.

One function per service; each writes its configuration under the
control plane's work directory, runs its one-time setup on the first
start (``first``), spawns the long-running process(es) through the
``ControlPlane`` (which records their pids) and waits until they answer.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tripleo_elements.testing.controlplane import (
    HOST, REGION, SERVICE_HOST, ControlPlaneError, Ports, _http_up,
    _port_open)

if TYPE_CHECKING:
    from tripleo_elements.testing.controlplane import ControlPlane

MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADBD = "/usr/sbin/mariadbd"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "epmd"


def _need(command: str, package: str) -> str:
    found = shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin") \
        if "/" not in command else (command if Path(command).exists()
                                    else None)
    if not found:
        raise ControlPlaneError(f"{command} not found",
                                f"install {package} (bindep.txt, test "
                                "profile)")
    return found


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode)
    path.chmod(mode)
    path.write_text(text)
    return path


# -- MariaDB ------------------------------------------------------------------
def start_mariadb(cp: "ControlPlane", ports: Ports,
                  secret: Mapping[str, str], first: bool,
                  deadline: float) -> None:
    install_db = _need(MARIADB_INSTALL_DB, "mariadb-server")
    mariadbd = _need(MARIADBD, "mariadb-server")
    base = cp.workdir / "mysql"
    data = base / "data"
    sock = base / "mysqld.sock"
    if first or not data.exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        cp._run("mariadb-install-db", [
            install_db, "--no-defaults", f"--datadir={data}", "--user=root",
            "--auth-root-authentication-method=socket", "--skip-test-db"])
    cp._spawn("mariadb", [
        mariadbd, "--no-defaults", f"--datadir={data}", "--user=root",
        f"--socket={sock}", f"--port={ports.mysql}",
        f"--bind-address={HOST}", f"--pid-file={base / 'mysqld.pid'}",
        "--skip-name-resolve", "--skip-log-bin",
        "--innodb-buffer-pool-size=64M", "--max-connections=500",
        "--innodb-flush-log-at-trx-commit=2",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_general_ci"])
    cp._wait("mariadb", lambda: sock.exists() and _port_open(ports.mysql),
             deadline)
    # Every start (idempotent, and a directory first started in a
    # smaller mode gets the other services' databases when it grows).
    cp._run("mariadb-users", [
        _need("mariadb", "mariadb-client"), "--no-defaults",
        f"--socket={sock}", "-u", "root"], stdin=database_sql(secret))


#: Each service's database user and its databases.
DATABASES: Mapping[str, tuple[str, ...]] = {
    "keystone": ("keystone",),
    "heat": ("heat",),
    "nova": ("nova_api", "nova_cell0", "nova"),
}


def database_sql(secret: Mapping[str, str]) -> str:
    """SQL creating every database and its user, loopback only
    (passwords: give it on stdin, never in argv)."""
    sql = []
    for user, databases in DATABASES.items():
        sql += [f"CREATE USER IF NOT EXISTS '{user}'@'{HOST}' "
                f"IDENTIFIED BY '{secret['db_' + user]}';"]
        for db in databases:
            sql += [f"CREATE DATABASE IF NOT EXISTS {db};",
                    f"GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'{HOST}';"]
    return "\n".join(sql) + "\n"


def db_url(user: str, ports: Ports, secret: Mapping[str, str],
           database: str | None = None) -> str:
    return (f"mysql+pymysql://{user}:{secret['db_' + user]}@{HOST}:"
            f"{ports.mysql}/{database or user}?charset=utf8mb4")


# -- RabbitMQ -----------------------------------------------------------------
def start_rabbitmq(cp: "ControlPlane", ports: Ports, deadline: float) -> None:
    server = _need(RABBITMQ_SERVER, "rabbitmq-server")
    epmd = _need(EPMD, "erlang-base (a rabbitmq-server dependency)")
    base = cp.workdir / "rabbitmq"
    (base / "mnesia").mkdir(parents=True, exist_ok=True)
    conf = _write(base / "rabbitmq.conf", "\n".join([
        f"listeners.tcp.1 = {HOST}:{ports.rabbit}",
        "loopback_users.guest = true",
        "log.console = true",
        "log.file = false",
        "log.console.level = warning",
        ""]))
    _write(base / "enabled_plugins", "[].\n")
    env = cp._base_env()
    env.update({
        "HOME": str(base), "ERL_EPMD_ADDRESS": HOST,
        "ERL_EPMD_PORT": str(ports.epmd)})
    # Our own epmd, in the foreground, so it is ours to stop (the one erl
    # would start is a daemon nobody stops).
    cp._spawn("epmd", [epmd, "-address", HOST, "-port", str(ports.epmd)],
              env)
    cp._wait("epmd", lambda: _port_open(ports.epmd), deadline)
    env.update({
        "RABBITMQ_NODENAME": f"tie{ports.rabbit}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(ports.rabbit),
        "RABBITMQ_DIST_PORT": str(ports.rabbit_dist),
        "RABBITMQ_CONFIG_FILE": str(conf),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(cp.logs),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
            "-kernel inet_dist_use_interface {127,0,0,1}",
    })
    cp._spawn("rabbitmq", [server], env)
    cp._wait("rabbitmq", lambda: _port_open(ports.rabbit), deadline)


def gunicorn(venv: Path, port: int, chdir: Path, app: str) -> list[str]:
    """gunicorn serving ``app`` on loopback; ``--preload`` so an app that
    cannot load ends the master (which we watch) instead of looping."""
    return [str(venv / "bin" / "gunicorn"), "--bind", f"{HOST}:{port}",
            "--workers", "1", "--threads", "8", "--worker-class", "gthread",
            "--timeout", "300", "--preload", "--chdir", str(chdir), app]


# The WSGI apps parse sys.argv as their oslo.config options: under
# gunicorn those are gunicorn's, so each gets a tiny entry module.
KEYSTONE_APP = """\
import sys
sys.argv = sys.argv[:1]  # its config files come from the environment
from keystone.wsgi.api import application  # noqa: E402,F401
"""


# -- Keystone -----------------------------------------------------------------
def start_keystone(cp: "ControlPlane", venv: Path, ports: Ports,
                   secret: Mapping[str, str], first: bool,
                   deadline: float) -> None:
    base = cp.workdir / "keystone"
    conf = _write(base / "keystone.conf", "\n".join([
        "[DEFAULT]",
        "debug = false",
        f"log_dir = {cp.logs}",
        "log_file = keystone-app.log",
        "[database]",
        f"connection = {db_url('keystone', ports, secret)}",
        "[token]",
        "provider = fernet",
        "[fernet_tokens]",
        f"key_repository = {base / 'fernet-keys'}",
        "[fernet_receipts]",
        f"key_repository = {base / 'fernet-keys'}",
        "[credential]",
        f"key_repository = {base / 'credential-keys'}",
        "[cache]",
        "enabled = false",
        ""]))
    manage = [str(venv / "bin" / "keystone-manage"), "--config-file",
              str(conf)]
    url = f"http://{SERVICE_HOST}:{ports.keystone}/v3"
    if first:
        for keys in ("fernet-keys", "credential-keys"):
            (base / keys).mkdir(mode=0o700, exist_ok=True)
        for name, args in (
                ("keystone-fernet", ["fernet_setup"]),
                ("keystone-credential", ["credential_setup"])):
            cp._run(name, manage + args + ["--keystone-user", "root",
                                           "--keystone-group", "root"])
        cp._run("keystone-db-sync", manage + ["db_sync"])
        env = cp._base_env()
        # keystone-manage reads the password from the environment.
        env["OS_BOOTSTRAP_PASSWORD"] = secret["admin"]
        cp._run("keystone-bootstrap", manage + [
            "bootstrap", "--bootstrap-username", "admin",
            "--bootstrap-project-name", "admin",
            "--bootstrap-role-name", "admin",
            "--bootstrap-service-name", "keystone",
            "--bootstrap-region-id", REGION,
            "--bootstrap-admin-url", url,
            "--bootstrap-internal-url", url,
            "--bootstrap-public-url", url], env=env)
    env = cp._base_env()
    env["OS_KEYSTONE_CONFIG_FILES"] = str(conf)
    _write(base / "keystone_app.py", KEYSTONE_APP, 0o644)
    cp._spawn("keystone", gunicorn(venv, ports.keystone, base,
                                   "keystone_app:application"), env)
    cp._wait("keystone", lambda: _http_up(
        f"http://{HOST}:{ports.keystone}/v3"), deadline)


# -- Nova (its compute API alone) -------------------------------------------
# Heat's SoftwareDeployment asks Nova whether the deployment's server
# exists before it counts a delete as done (see the README, "Testing
# against a real Heat"); the API answering 404 is all it needs, so there
# is no conductor, scheduler, placement or compute here, and no cell
# beyond cell0.
NOVA_APP = """\
import sys
sys.argv = sys.argv[:1]  # its config files come from the environment
from nova.wsgi.osapi_compute import application  # noqa: E402,F401
"""


def nova_conf(cp: "ControlPlane", ports: Ports,
              secret: Mapping[str, str]) -> str:
    base = cp.workdir / "nova"
    return "\n".join([
        "[DEFAULT]",
        "debug = false",
        f"log_dir = {cp.logs}",
        "log_file = nova-api-app.log",
        "host = tie-control",
        f"my_ip = {HOST}",
        f"state_path = {base / 'state'}",
        f"transport_url = rabbit://guest:guest@{HOST}:{ports.rabbit}/",
        "[api]",
        "auth_strategy = keystone",
        "[api_database]",
        f"connection = {db_url('nova', ports, secret, 'nova_api')}",
        "[database]",
        f"connection = {db_url('nova', ports, secret, 'nova')}",
        "[keystone_authtoken]",
        f"www_authenticate_uri = http://{SERVICE_HOST}:{ports.keystone}/v3",
        f"auth_url = http://{HOST}:{ports.keystone}/v3",
        "auth_type = password",
        "username = nova",
        f"password = {secret['nova']}",
        "user_domain_name = Default",
        "project_name = service",
        "project_domain_name = Default",
        "[oslo_concurrency]",
        f"lock_path = {base / 'locks'}",
        "[oslo_messaging_notifications]",
        "driver = noop",
        ""])


def start_nova(cp: "ControlPlane", venv: Path, ports: Ports,
               secret: Mapping[str, str], first: bool,
               deadline: float) -> None:
    base = cp.workdir / "nova"
    (base / "locks").mkdir(parents=True, exist_ok=True)
    (base / "state").mkdir(exist_ok=True)
    etc = base / "etc"
    _write(etc / "nova.conf", nova_conf(cp, ports, secret))
    paste = next(venv.glob("etc/nova/api-paste.ini"), None)
    if paste is None:
        raise ControlPlaneError(f"no etc/nova/api-paste.ini in {venv}",
                                "remove that venv to have it reinstalled")
    _write(etc / "api-paste.ini", paste.read_text(), 0o644)
    env = cp._base_env()
    env["OS_NOVA_CONFIG_DIR"] = str(etc)
    if first:
        manage = [str(venv / "bin" / "nova-manage"), "--config-dir",
                  str(etc)]
        # map_cell0 derives cell0's URL from [database] (nova ->
        # nova_cell0), so no password goes into argv.
        for name, args in (("nova-api-db-sync", ["api_db", "sync"]),
                           ("nova-map-cell0", ["cell_v2", "map_cell0"]),
                           ("nova-db-sync", ["db", "sync"])):
            cp._run(name, manage + args, env=env)
        cp.tasks("nova-setup", {
            "auth_url": f"http://{HOST}:{ports.keystone}/v3",
            "admin_password": secret["admin"],
            "nova_password": secret["nova"],
            "nova_url": f"http://{SERVICE_HOST}:{ports.nova}/v2.1",
            "region": REGION})
    _write(base / "nova_app.py", NOVA_APP, 0o644)
    cp._spawn("nova-api", gunicorn(venv, ports.nova, base,
                                   "nova_app:application"), env)
    cp._wait("nova-api", lambda: _http_up(f"http://{HOST}:{ports.nova}/"),
             deadline)


# -- Heat -------------------------------------------------------------------
HEAT_APP = """\
import sys
sys.argv = [sys.argv[0], "--config-file", {conf!r}]
from heat.wsgi.api import application  # noqa: E402,F401
"""


def heat_conf(cp: "ControlPlane", venv: Path, ports: Ports,
              secret: Mapping[str, str]) -> str:
    local_auth = f"http://{HOST}:{ports.keystone}/v3"
    public_auth = f"http://{SERVICE_HOST}:{ports.keystone}/v3"
    paste = next(venv.glob("etc/heat/api-paste.ini"), None)
    if paste is None:
        raise ControlPlaneError(f"no etc/heat/api-paste.ini in {venv}",
                                "remove that venv to have it reinstalled")
    auth = [
        "auth_type = password",
        f"auth_url = {local_auth}",
        "username = heat",
        f"password = {secret['heat']}",
        "user_domain_name = Default",
    ]
    return "\n".join([
        "[DEFAULT]",
        "debug = false",
        f"log_dir = {cp.logs}",
        f"transport_url = rabbit://guest:guest@{HOST}:{ports.rabbit}/",
        "stack_user_domain_name = heat",
        "stack_domain_admin = heat_domain_admin",
        f"stack_domain_admin_password = {secret['domain_admin']}",
        f"auth_encryption_key = {secret['auth_encryption_key']}",
        "server_keystone_endpoint_type = public",
        f"region_name_for_services = {REGION}",
        "num_engine_workers = 2",
        "max_json_body_size = 1048576",
        "[database]",
        f"connection = {db_url('heat', ports, secret)}",
        "[paste_deploy]",
        f"api_paste_config = {paste}",
        "[oslo_concurrency]",
        f"lock_path = {cp.workdir / 'heat' / 'locks'}",
        "[keystone_authtoken]",
        f"www_authenticate_uri = {public_auth}",
        *auth,
        "project_name = service",
        "project_domain_name = Default",
        "[trustee]",
        *auth,
        "[clients_keystone]",
        f"auth_uri = {public_auth}",
        "[clients]",
        "endpoint_type = publicURL",
        "[heat_api]",
        f"bind_host = {HOST}",
        f"bind_port = {ports.heat}",
        "[oslo_messaging_notifications]",
        "driver = noop",
        ""])


def start_heat(cp: "ControlPlane", venv: Path, ports: Ports,
               secret: Mapping[str, str], first: bool,
               deadline: float) -> None:
    base = cp.workdir / "heat"
    conf = _write(base / "heat.conf", heat_conf(cp, venv, ports, secret))
    (base / "locks").mkdir(exist_ok=True)
    _write(base / "heat_api_app.py", HEAT_APP.format(conf=str(conf)), 0o644)
    params = {"auth_url": f"http://{HOST}:{ports.keystone}/v3",
              "admin_password": secret["admin"],
              "heat_password": secret["heat"],
              "domain_admin_password": secret["domain_admin"],
              "heat_url": (f"http://{SERVICE_HOST}:{ports.heat}"
                           "/v1/%(project_id)s"),
              "region": REGION, "timeout": 240}
    if first:
        cp._run("heat-db-sync", [str(venv / "bin" / "heat-manage"),
                                 "--config-file", str(conf), "db_sync"])
        cp.tasks("keystone-setup", params)
    cp._spawn("heat-engine", [str(venv / "bin" / "heat-engine"),
                              "--config-file", str(conf)])
    cp._spawn("heat-api", gunicorn(venv, ports.heat, base,
                                   "heat_api_app:application"))
    cp._wait("heat-api", lambda: _http_up(f"http://{HOST}:{ports.heat}/"),
             deadline)
    cp.tasks("wait-heat", params)
