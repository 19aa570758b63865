#!/usr/bin/env python3
"""Local stand-in images for machines that cannot reach a container registry.

The project normally runs the official images ``python:3.12-slim``,
``mysql:9.7`` (or ``mariadb:11.8``) and ``rabbitmq:4.1-management``.  When
none of those is present locally and ``docker pull`` cannot work (no
registry), this module builds look-alike images from Debian packages instead:

    python   -> local/python:3.13-trixie
    mysql    -> local/mysql:9.7-trixie      (Oracle's MySQL, from Debian sid)
    mariadb  -> local/mariadb:11.8-trixie
    rabbitmq -> local/rabbitmq:4.0-trixie-management

All of them are built FROM ``local/debian:trixie-trusted`` (``offline/trusted``:
ca-certificates and the host's CA bundle), itself FROM ``local/debian:trixie-minbase``,
made with ``debootstrap --variant=minbase trixie`` + ``docker import``.

Standard library only, Python 3.9+.  Usable as a module::

    from offline.standins import STANDINS, build_standin
    image = build_standin("mysql", log=print)

or from the command line::

    python offline/standins.py [python|mysql|mariadb|rabbitmq|base|all] [--rebuild]

Every build is cached: if the image already exists, nothing is done.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent

BASE_IMAGE = "local/debian:trixie-minbase"
BASE_SUITE = "trixie"
# The base plus the host's CAs: what every stand-in starts from (offline/trusted).
TRUSTED_IMAGE = "local/debian:trixie-trusted"

STANDINS: dict[str, str] = {
    "python": "local/python:3.13-trixie",
    "mysql": "local/mysql:9.7-trixie",
    "mariadb": "local/mariadb:11.8-trixie",
    "rabbitmq": "local/rabbitmq:4.0-trixie-management",
}

# The official image each stand-in replaces (informational).
OFFICIAL: dict[str, str] = {
    "python": "python:3.12-slim",
    "mysql": "mysql:9.7",
    "mariadb": "mariadb:11.8",
    "rabbitmq": "rabbitmq:4.1-management",
}

# Where each stand-in is built from: a folder of offline/ and its Dockerfile.
# The two databases share one folder: one entrypoint serves both engines.
SOURCES: dict[str, tuple[str, str]] = {
    "python": ("python", "Dockerfile"),
    "mysql": ("mysql", "Dockerfile"),
    "mariadb": ("mysql", "Dockerfile.mariadb"),
    "rabbitmq": ("rabbitmq", "Dockerfile"),
}


def standin_kind(image: str, kind: str) -> str:
    """The stand-in for an official image: a database image named mariadb gets MariaDB's."""
    if kind == "mysql" and "mariadb" in image.rsplit("/", 1)[-1]:
        return "mariadb"
    return kind

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Name of the copy placed in each build context (git-ignored, removed after).
CA_IN_CONTEXT = "host-ca-bundle.crt"

Log = Callable[[str], None]


class StandinError(RuntimeError):
    """Raised with a human-readable explanation when a stand-in cannot be built."""


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def _docker() -> str:
    docker = shutil.which("docker")
    if not docker:
        raise StandinError(
            "`docker` is not on PATH; the stand-in images need a running Docker engine."
        )
    return docker


def image_exists(name: str) -> bool:
    """True if the local Docker engine already has image `name`."""
    res = subprocess.run(
        [_docker(), "image", "inspect", "--format", "{{.Id}}", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    if res.returncode == 0:
        return True
    if "no such image" in res.stderr.lower():
        return False
    raise StandinError(
        f"cannot query the Docker engine (`docker image inspect {name}`): "
        f"{res.stderr.strip() or f'exit {res.returncode}'}"
    )


def _run_logged(cmd: list[str], log: Log, what: str, cwd: Path | None = None) -> None:
    """Run `cmd`, streaming its combined output line by line to `log`."""
    log("$ " + " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd) if cwd else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = ([*tail, line])[-25:]
        log("  " + line)
    rc = proc.wait()
    if rc != 0:
        raise StandinError(
            f"{what} failed (exit {rc}). Last output:\n" + "\n".join(tail)
        )


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Inter-process lock so parallel callers do not build the same image twice."""
    try:
        import fcntl  # POSIX only
    except ImportError:  # pragma: no cover
        yield
        return
    path = Path(tempfile.gettempdir()) / ("standin-{}.lock".format(name.replace("/", "_").replace(":", "_")))
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------
# base image: debootstrap --variant=minbase trixie + docker import
# --------------------------------------------------------------------------
def build_base(log: Log = print, rebuild: bool = False) -> str:
    """Create `local/debian:trixie-minbase` unless it already exists."""
    if not rebuild and image_exists(BASE_IMAGE):
        return BASE_IMAGE
    with _lock(BASE_IMAGE):
        if not rebuild and image_exists(BASE_IMAGE):
            return BASE_IMAGE
        debootstrap = shutil.which("debootstrap") or (
            "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
        )
        if not debootstrap:
            raise StandinError(
                f"debootstrap is not installed, so the local Debian base image {BASE_IMAGE} cannot be "
                "built. Install it with `apt-get install debootstrap` (as root). This path "
                "is only for machines without access to a container registry; where "
                "`docker pull` works, use the official images instead."
            )
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise StandinError(
                f"building the base image {BASE_IMAGE} needs root (debootstrap creates device nodes "
                "and chowns files). Re-run as root, e.g. "
                f"`sudo python3 {Path(__file__).resolve()} base`. This path "
                "is only for machines without access to a container registry."
            )
        docker = _docker()
        log(f"Building base image {BASE_IMAGE} with debootstrap ({BASE_SUITE}, minbase); about 30-60 s ...")
        t0 = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix="standin-rootfs-", dir="/var/tmp"))
        rootfs = workdir / "rootfs"
        try:
            _run_logged([debootstrap, "--variant=minbase", BASE_SUITE, str(rootfs)], log, "debootstrap")
            # A few clean-ups that make the rootfs behave like a container base.
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                d = rootfs / junk
                if d.is_dir():
                    for p in d.iterdir():
                        if p.is_file() and p.name != "lock":
                            p.unlink()
            (rootfs / "etc" / "hostname").write_text("localhost\n")
            log(f"$ tar -C {rootfs} -c . | docker import - {BASE_IMAGE}")
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
            )
            imp = subprocess.run(
                [
                    docker, "import",
                    "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change", "ENV LANG=C.UTF-8",
                    "--change", 'CMD ["bash"]',
                    "--message", f"debootstrap --variant=minbase {BASE_SUITE}",
                    "-", BASE_IMAGE,
                ],
                stdin=tar.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert tar.stdout is not None
            tar.stdout.close()
            tar_rc = tar.wait()
            if tar_rc != 0 or imp.returncode != 0:
                raise StandinError("docker import of the debootstrap rootfs failed:\n" + imp.stdout)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"Base image {BASE_IMAGE} ready in {time.monotonic() - t0:.0f} s.")
        return BASE_IMAGE


# --------------------------------------------------------------------------
# stand-ins
# --------------------------------------------------------------------------
def build_trusted_base(log: Log = print, rebuild: bool = False) -> str:
    """The debootstrap base with ca-certificates and the host's CA bundle, that the stand-ins share."""
    if not rebuild and image_exists(TRUSTED_IMAGE):
        return TRUSTED_IMAGE
    with _lock(TRUSTED_IMAGE):
        if rebuild or not image_exists(TRUSTED_IMAGE):
            build_base(log)
            _docker_build(HERE / "trusted", TRUSTED_IMAGE, BASE_IMAGE, log)
    return TRUSTED_IMAGE


def build_standin(kind: str, log: Log = print, rebuild: bool = False) -> str:
    """Build (or reuse if the image already exists) the stand-in for `kind`, return its image name.

    `kind` is one of STANDINS' keys: "python", "mysql", "mariadb", "rabbitmq".
    """
    if kind not in STANDINS:
        raise StandinError(f"unknown stand-in {kind!r}; choose one of {', '.join(sorted(STANDINS))}")
    image = STANDINS[kind]
    if not rebuild and image_exists(image):
        return image
    with _lock(image):
        if rebuild or not image_exists(image):
            build_trusted_base(log)
            log(f"Building stand-in {image} (replaces {OFFICIAL[kind]}) ...")
            folder, dockerfile = SOURCES[kind]
            _docker_build(HERE / folder, image, TRUSTED_IMAGE, log, dockerfile=dockerfile,
                          labels=[f"org.local.standin-for={OFFICIAL[kind]}"])
    return image


def _docker_build(context: Path, image: str, base: str, log: Log, labels: list[str] | None = None,
                  dockerfile: str = "Dockerfile") -> None:
    """docker build of one folder of offline/, with the host CA bundle in its context for the build."""
    if not (context / dockerfile).is_file():
        raise StandinError("missing %s" % (context / dockerfile))
    if not HOST_CA_BUNDLE.is_file():
        raise StandinError(
            f"host CA bundle {HOST_CA_BUNDLE} not found; the stand-in builds copy it into the image so "
            "apt/pip inside `docker build` trust the same CAs as the host. "
            "Install it with `apt-get install ca-certificates`."
        )
    t0 = time.monotonic()
    ca_copy = context / CA_IN_CONTEXT
    shutil.copyfile(HOST_CA_BUNDLE, ca_copy)
    try:
        _run_logged(
            [
                _docker(), "build",
                "--build-arg", f"BASE_IMAGE={base}",
                "--file", str(context / dockerfile),
                *[arg for label in labels or [] for arg in ("--label", label)],
                "-t", image,
                str(context),
            ],
            log,
            f"docker build of {image}",
        )
    finally:
        with contextlib.suppress(OSError):
            ca_copy.unlink()
    log(f"{image} ready in {time.monotonic() - t0:.0f} s.")


def build_all(log: Log = print, rebuild: bool = False) -> dict[str, str]:
    return {kind: build_standin(kind, log, rebuild) for kind in STANDINS}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rebuild = "--rebuild" in argv
    argv = [a for a in argv if a != "--rebuild"]
    if any(a in ("-h", "--help") for a in argv) or len(argv) > 1:
        print(f"usage: {Path(sys.argv[0]).name} [python|mysql|mariadb|rabbitmq|base|all] [--rebuild]")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    what = argv[0] if argv else "all"
    t0 = time.monotonic()
    try:
        if what == "base":
            print(build_base(rebuild=rebuild))
            print(build_trusted_base(rebuild=rebuild))
        elif what == "all":
            for kind, image in build_all(rebuild=rebuild).items():
                print(f"{kind:<8} {image}")
        else:
            print(build_standin(what, rebuild=rebuild))
    except StandinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("done in %.1f s" % (time.monotonic() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
