#!/usr/bin/env python3
"""Write qus's images as an OCI image layout (target/oci), compressed
exactly as they are published.

Why by hand and not with buildah: what makes the default image small is
zstd's long-distance matching (a 128 MiB window, `zstd --long=27`). QEMU's
emulators share most of their code, so the second and later emulators in
a layer cost a fraction of the first; buildah's zstd (and Docker's)
compresses with an 8 MiB window and cannot see it. Layers written here
are plain OCI layers (`application/vnd.oci.image.layer.v1.tar+zstd`,
`…tar+gzip` for the fallback) that any engine with zstd support pulls.

Each arch's image is three layers, so the tags share bytes in a registry:

  1. qus, qusd and the `binfmt` link (the drop-in's entry point),
  2. the emulators for the Docker platform set (what docker/setup-qemu-action
     and tonistiigi/binfmt install: amd64, arm64, arm, riscv64, ppc64le,
     s390x, 386, mips64le, mips64, loong64), minus the image's own arch,
  3. every other emulator the QEMU channel has (the `full` tag only).

Refs (`org.opencontainers.image.ref.name` in index.json), each an image
index over every arch built:

  latest   layers 1+2, zstd, entry point qus (CMD register)
  binfmt   layers 1+2, zstd, entry point binfmt (tonistiigi/binfmt's and
           multiarch/qemu-user-static's command lines)
  full     layers 1+2+3, zstd, entry point qus
  gzip     layers 1+2, gzip: the fallback for engines without zstd

  oci.py arch LAYOUT ARCH VARIANT CONTEXT --version V --channel C --qemu-version Q
  oci.py index LAYOUT REF=KIND ...     (KIND: latest, binfmt, full, gzip)

`arch` adds one arch's manifests (CONTEXT holds qus, qusd and emulators/);
`index` writes index.json from every arch added and drops blobs nothing
refers to. Compressed blobs are cached by the digest of their tar and the
compression in /var/cache/qus/oci-blobs, as zstd -19 of a layer takes a
minute.
"""

import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

# The Docker platform set, by QEMU name (tonistiigi/binfmt's table).
PLATFORM_SET = [
    "x86_64", "aarch64", "arm", "riscv64", "ppc64le", "s390x", "i386",
    "mips64el", "mips64", "loongarch64",
]
ZSTD = ["zstd", "-19", "--long=27", "-q", "-c"]
# The `full` tag's extra layer: level 12 keeps the build to seconds per
# arch (level 19 would add minutes for a tag few pull).
ZSTD_FULL = ["zstd", "-12", "--long=27", "-q", "-c"]
MEDIA = {
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "zstd-full": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
CACHE = os.environ.get("QUS_OCI_CACHE", "/var/cache/qus/oci-blobs")


def die(msg):
    print(f"oci.py: {msg}", file=sys.stderr)
    sys.exit(1)


def write_blob(layout, data):
    """Store bytes as a blob; return its descriptor fields."""
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_json_blob(layout, media, obj):
    d = write_blob(layout, json.dumps(obj, indent=2, sort_keys=False).encode())
    return {"mediaType": media, **d}


def layer_tar(files, mtime, path):
    """A deterministic tar, at path, of (name in image, path on disk or link
    target, kind) entries under usr/bin: sorted, root-owned, fixed times.
    Returns its digest (the layer's diff_id)."""
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("usr/", "usr/bin/"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, src, kind in sorted(files):
            info = tarfile.TarInfo(f"usr/bin/{name}")
            info.mtime, info.uid, info.gid = mtime, 0, 0
            if kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, src, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = os.path.getsize(src), 0o755
                with open(src, "rb") as f:
                    tar.addfile(info, f)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def compress(layout, tar_path, diff_id, how):
    """The compressed blob of a layer tar (cached by its digest)."""
    os.makedirs(CACHE, exist_ok=True)
    cached = os.path.join(CACHE, f"{diff_id.split(':')[1]}.{how}")
    if not os.path.exists(cached):
        tmp = cached + f".{os.getpid()}.tmp"
        with open(tmp, "wb") as out, open(tar_path, "rb") as buf:
            if how == "gzip":
                with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as z:
                    shutil.copyfileobj(buf, z, 1 << 20)
            else:
                cmd = ZSTD if how == "zstd" else ZSTD_FULL
                subprocess.run(cmd, stdin=buf, stdout=out, check=True)
        os.rename(tmp, cached)
    h = hashlib.sha256()
    with open(cached, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    dest = os.path.join(layout, "blobs", "sha256", digest)
    if not os.path.exists(dest):
        shutil.copyfile(cached, dest + ".tmp")
        os.rename(dest + ".tmp", dest)
    return {"mediaType": MEDIA[how], "digest": f"sha256:{digest}", "size": os.path.getsize(dest)}


def emulator_arch(name):
    """qemu-aarch64 / qemu-aarch64-static -> aarch64."""
    base = name[len("qemu-"):]
    return base[: -len("-static")] if base.endswith("-static") else base


def cmd_arch(layout, arch, variant, ctx, version, channel, qemu_version):
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    os.makedirs(os.path.join(layout, "pending"), exist_ok=True)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    emu_dir = os.path.join(ctx, "emulators")
    emulators = sorted(
        n for n in os.listdir(emu_dir)
        if n.startswith("qemu-") and os.path.isfile(os.path.join(emu_dir, n))
        and not os.path.islink(os.path.join(emu_dir, n))
    )
    if not emulators:
        die(f"no emulators in {emu_dir}")
    slim = [n for n in emulators if emulator_arch(n) in PLATFORM_SET]
    rest = [n for n in emulators if n not in slim]
    groups = {
        "qus": [("qus", os.path.join(ctx, "qus"), "file"),
                ("qusd", os.path.join(ctx, "qusd"), "file"),
                ("binfmt", "qus", "link")],
        "slim": [(n, os.path.join(emu_dir, n), "file") for n in slim],
        "rest": [(n, os.path.join(emu_dir, n), "file") for n in rest],
    }
    scratch = tempfile.mkdtemp(prefix="qus-oci-")
    tars = {}
    for g, files in groups.items():
        if files:
            path = os.path.join(scratch, f"{g}.tar")
            tars[g] = (path, layer_tar(files, mtime, path))
    jobs = [("qus", "zstd"), ("slim", "zstd"), ("qus", "gzip"), ("slim", "gzip")]
    if "rest" in tars:
        jobs.append(("rest", "zstd-full"))

    def run(job):
        g, how = job
        path, diff_id = tars[g]
        return job, compress(layout, path, diff_id, how)

    # Two at a time (the machines this runs on have two cores): the
    # emulator layer's zstd -19 takes about a minute, the rest meanwhile.
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            blobs = dict(pool.map(run, jobs))
    finally:
        shutil.rmtree(scratch)

    labels = {
        "org.opencontainers.image.title": "qus",
        "org.opencontainers.image.description":
            "Register QEMU user-mode emulators with binfmt_misc and keep them right",
        "org.opencontainers.image.version": version,
        "org.qus.qemu.channel": channel,
        "org.qus.qemu.version": qemu_version,
    }
    platform = {"architecture": arch, "os": "linux"}
    if variant and variant != "-":
        platform["variant"] = variant
    created = os.environ.get("QUS_CREATED")

    def image(layer_groups, how_of, entrypoint, cmd, what):
        layers = [blobs[(g, how_of(g))] for g in layer_groups if g in tars]
        config = {
            **({"created": created} if created else {}),
            **platform,
            "config": {"Entrypoint": entrypoint, "Cmd": cmd, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [tars[g][1] for g in layer_groups if g in tars]},
            "history": [{"created_by": f"qus packaging/container/oci.py: {g}", **({"created": created} if created else {})}
                        for g in layer_groups if g in tars],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": write_json_blob(layout, CONFIG, config),
            "layers": layers,
            "annotations": {"org.opencontainers.image.title": f"qus {what}"},
        }
        return {**write_json_blob(layout, MANIFEST, manifest), "platform": platform}

    zstd_of = lambda g: "zstd-full" if g == "rest" else "zstd"  # noqa: E731
    pending = {
        "latest": image(["qus", "slim"], zstd_of, ["/usr/bin/qus"], ["register"], "latest"),
        "binfmt": image(["qus", "slim"], zstd_of, ["/usr/bin/binfmt"], [], "binfmt"),
        "full": image(["qus", "slim", "rest"], zstd_of, ["/usr/bin/qus"], ["register"], "full"),
        "gzip": image(["qus", "slim"], lambda g: "gzip", ["/usr/bin/qus"], ["register"], "gzip"),
    }
    with open(os.path.join(layout, "pending", f"{arch}.json"), "w") as f:
        json.dump(pending, f, indent=2)
    for kind, desc in pending.items():
        with open(os.path.join(layout, "blobs", "sha256", desc["digest"].split(":")[1]), "rb") as f:
            m = json.load(f)
        total = sum(layer["size"] for layer in m["layers"])
        print(f"oci: {arch} {kind}: {len(m['layers'])} layers, {total} bytes compressed")
    print(f"oci: {arch}: {len(slim)} emulators in latest, {len(emulators)} in full")


def cmd_index(layout, refs):
    pending_dir = os.path.join(layout, "pending")
    if not os.path.isdir(pending_dir):
        die(f"no arch added to {layout} (oci.py arch first)")
    per_arch = []
    for name in sorted(os.listdir(pending_dir)):
        with open(os.path.join(pending_dir, name)) as f:
            per_arch.append(json.load(f))
    manifests = []
    for ref in refs:
        name, _, kind = ref.partition("=")
        if kind not in ("latest", "binfmt", "full", "gzip"):
            die(f"ref {ref}: kind must be latest, binfmt, full or gzip")
        index = {"schemaVersion": 2, "mediaType": INDEX,
                 "manifests": [a[kind] for a in per_arch]}
        d = write_json_blob(layout, INDEX, index)
        manifests.append({**d, "annotations": {"org.opencontainers.image.ref.name": name}})
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}, f, indent=2)
    shutil.rmtree(pending_dir)
    gc(layout)


def gc(layout):
    """Drop blobs no ref reaches (an earlier build's)."""
    blob_dir = os.path.join(layout, "blobs", "sha256")
    seen = set()

    def walk(digest):
        if digest in seen:
            return
        seen.add(digest)
        path = os.path.join(blob_dir, digest.split(":")[1])
        try:
            with open(path, "rb") as f:
                obj = json.load(f)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(obj, dict) or obj.get("mediaType") not in (INDEX, MANIFEST):
            return
        for d in obj.get("manifests", []):
            walk(d["digest"])
        if "config" in obj:
            walk(obj["config"]["digest"])
        for d in obj.get("layers", []):
            seen.add(d["digest"])

    with open(os.path.join(layout, "index.json")) as f:
        for d in json.load(f)["manifests"]:
            walk(d["digest"])
    for name in os.listdir(blob_dir):
        if f"sha256:{name}" not in seen:
            os.remove(os.path.join(blob_dir, name))


def main(argv):
    if len(argv) >= 6 and argv[0] == "arch":
        opts = dict(zip(argv[5::2], argv[6::2]))
        try:
            cmd_arch(argv[1], argv[2], argv[3], argv[4], opts["--version"],
                     opts["--channel"], opts["--qemu-version"])
        except KeyError as e:
            die(f"arch: missing option {e}")
    elif len(argv) >= 3 and argv[0] == "index":
        cmd_index(argv[1], argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
