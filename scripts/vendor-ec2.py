#!/usr/bin/env python3
"""Writes vendor/aws-sdk-ec2: the official aws-sdk-ec2 crate (the version and checksum below, from
crates.io), with only the EC2 operations this project calls and the code they reach, as the package
`platform-aws-sdk-ec2` (its library is still `aws_sdk_ec2`).

Why: aws-sdk-ec2 is 1.2 million lines of generated code for ~800 operations; the network stack calls
about 35 of them. On this project's 2-core machines the whole crate takes longer to compile cold than a
work session lasts. The kept files are copied unchanged; only the generated module lists (`mod x;`,
`pub use ..`) and the per-operation items of the crate-wide files (`error_meta.rs`, `lens.rs`, ...) are
filtered, and the package is renamed. The workspace depends on it by path under that name
(`aws-sdk-ec2 = { package = "platform-aws-sdk-ec2", path = ... }`), so a project that depends on
network-stack from git or by path builds the same pruned crate, not the registry's.

To upgrade: set UPSTREAM_VERSION and UPSTREAM_SHA256 (the `cksum` of that version in
https://index.crates.io/aw/s-/aws-sdk-ec2) and run this script. To call a new EC2 operation: add it to
OPERATIONS and run it again. CI runs `--check`: the script must reproduce vendor/ byte for byte.

    python3 scripts/vendor-ec2.py            # writes vendor/aws-sdk-ec2
    python3 scripts/vendor-ec2.py --check    # compares what it would write with vendor/aws-sdk-ec2
"""
import filecmp
import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

# The official crate this one is cut from.
UPSTREAM_VERSION = "1.274.0"
UPSTREAM_SHA256 = "13e3f0815e4ac74946498e34064459dbae1efb7ec174cce6ed444f50f82a0a73"
# The pruned crate's package name.
PACKAGE = "platform-aws-sdk-ec2"

# Every EC2 operation the workspace calls (resources, suites, benchmark), snake_case.
OPERATIONS = sorted("""
associate_route_table attach_internet_gateway authorize_security_group_egress
authorize_security_group_ingress create_internet_gateway create_route create_route_table
create_security_group create_subnet create_tags create_vpc delete_internet_gateway delete_route
delete_route_table delete_security_group delete_subnet delete_tags delete_vpc
describe_availability_zones describe_internet_gateways describe_route_tables describe_security_groups
describe_subnets describe_vpc_attribute describe_vpcs detach_internet_gateway disassociate_route_table
modify_subnet_attribute modify_vpc_attribute replace_route replace_route_table_association
revoke_security_group_egress revoke_security_group_ingress
""".split())

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "vendor" / "aws-sdk-ec2"


def upstream_source(scratch: Path) -> Path:
    """The official crate's sources: the cargo registry's copy when there is one, else the .crate
    downloaded from crates.io into `scratch` and checked against UPSTREAM_SHA256."""
    name = f"aws-sdk-ec2-{UPSTREAM_VERSION}"
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(home.glob(f"registry/src/*/{name}"))
    if found:
        return found[0]
    url = f"https://static.crates.io/crates/aws-sdk-ec2/{name}.crate"
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != UPSTREAM_SHA256:
        sys.exit(f"vendor-ec2: {url} has sha256 {digest}, expected {UPSTREAM_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        t.extractall(scratch, filter="data")
    return scratch / name


def differences(a: Path, b: Path) -> list[str]:
    """The files that differ between trees `a` and `b` (or are in one only), relative paths."""
    out = []
    cmp = filecmp.dircmp(a, b)
    out += [f"only in {a}: {n}" for n in cmp.left_only] + [f"only in {b}: {n}" for n in cmp.right_only]
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    out += [f"differs: {a / n}" for n in mismatch + errors]
    for sub in cmp.common_dirs:
        out += differences(a / sub, b / sub)
    return out


# A reference to another module of the crate, as the generated code writes it.
REF = re.compile(r"crate::(types::builders|types::error|types|protocol_serde|operation|waiters)::(\w+)")


def items(text: str) -> list[str]:
    """Top-level items of a generated file: split before each line that starts at column 0 with an item
    keyword or an attribute, keeping doc comments and attributes with the item they precede."""
    out, cur = [], []
    starts = re.compile(r"^(pub|impl|fn|mod|use|struct|enum|#\[|///|//!|const|static|type|trait)")
    pending_head = False
    for line in text.splitlines(keepends=True):
        if starts.match(line) and not pending_head:
            if cur:
                out.append("".join(cur))
            cur = [line]
        else:
            cur.append(line)
        # Attributes and doc comments belong to the item on the next line.
        pending_head = bool(re.match(r"^(#\[|///)", line))
    if cur:
        out.append("".join(cur))
    return out


def main() -> None:
    check = sys.argv[1:] == ["--check"]
    scratch = Path(tempfile.mkdtemp(prefix="vendor-ec2-"))
    try:
        write(upstream_source(scratch), scratch / "out" if check else OUT)
        if check:
            diff = differences(scratch / "out", OUT)
            if diff:
                sys.exit("vendor-ec2: vendor/aws-sdk-ec2 is not what the script writes:\n" + "\n".join(diff))
            print(f"vendor-ec2: vendor/aws-sdk-ec2 is what the script writes from aws-sdk-ec2 {UPSTREAM_VERSION}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write(src: Path, dest: Path) -> None:
    s = src / "src"
    types_rs = (s / "types.rs").read_text()
    # Re-exported name -> module under types/ (e.g. Vpc -> _vpc).
    type_module = dict(
        (name, mod)
        for mod, name in re.findall(r"pub use crate::types::(_\w+)::(\w+);", types_rs)
    )
    builders_rs = (s / "types" / "builders.rs").read_text()
    type_module.update(
        (name, mod)
        for mod, name in re.findall(r"pub use crate::types::(_\w+)::(\w+);", builders_rs)
    )

    def files_of(kind: str, name: str) -> list[Path]:
        if kind == "operation":
            d = s / "operation" / name
            return [s / "operation" / f"{name}.rs"] + (sorted(d.rglob("*.rs")) if d.is_dir() else []) + [
                s / "client" / f"{name}.rs"
            ]
        if kind == "types":
            return [s / "types" / f"{name}.rs"]
        if kind == "protocol_serde":
            return [s / "protocol_serde" / f"{name}.rs"]
        if kind == "waiters":
            return [s / "waiters" / f"{name}.rs"]
        raise AssertionError(kind)

    def refs_in(text: str) -> set[tuple[str, str]]:
        found = set()
        for kind, name in REF.findall(text):
            if kind in ("types", "types::builders"):
                if name.startswith("_"):
                    found.add(("types", name))
                elif name in type_module:
                    found.add(("types", type_module[name]))
            elif kind == "types::error":
                found.add(("types", "error"))
            else:
                found.add((kind, name))
        return found

    keep: set[tuple[str, str]] = set()
    todo = [("operation", op) for op in OPERATIONS]
    while todo:
        unit = todo.pop()
        if unit in keep or unit == ("types", "error"):
            continue
        paths = [p for p in files_of(*unit) if p.exists()]
        if not paths:
            continue
        keep.add(unit)
        for p in paths:
            todo.extend(refs_in(p.read_text()) - keep)
    kept = {kind: {n for k, n in keep if k == kind} for kind in ("operation", "types", "protocol_serde", "waiters")}

    def wanted(text: str) -> bool:
        """Whether an item's code (its doc comments aside) refers only to kept modules."""
        code = "".join(l for l in text.splitlines(keepends=True) if not l.lstrip().startswith("//"))
        for kind, name in REF.findall(code):
            if kind in ("types", "types::builders"):
                mod = name if name.startswith("_") else type_module.get(name)
                if mod is not None and mod not in kept["types"]:
                    return False
            elif kind in ("operation", "protocol_serde", "waiters") and name not in kept[kind]:
                return False
        return True

    def filter_file(rel: str, mods: set[str] | None = None) -> None:
        """Copies src/rel keeping the items that refer only to kept modules (and, for `mod x;`
        lines, only the kept `mods`)."""
        out = []
        for item in items((s / rel).read_text()):
            m = re.search(r"^(?:pub(?:\(crate\))? )?mod (\w+);", item, re.M)
            if m and mods is not None and m.group(1) not in mods:
                continue
            if wanted(item):
                out.append(item)
        (dest / "src" / rel).write_text("".join(out))

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "src").mkdir(parents=True)
    for f in ("LICENSE", "README.md"):
        shutil.copy(src / f, dest / f)
    # The package under a name of its own (the library keeps its name: `use aws_sdk_ec2::...`).
    manifest = (src / "Cargo.toml").read_text()
    renamed = manifest.replace('\nname = "aws-sdk-ec2"\n', f'\nname = "{PACKAGE}"\n', 1)
    if renamed == manifest or '[lib]\nname = "aws_sdk_ec2"' not in renamed:
        sys.exit("vendor-ec2: the upstream Cargo.toml does not name its package and library as expected")
    # `[hints]` is for registry crates; on a path dependency stable cargo warns it ignores it, a
    # warning every build of every user would show.
    hints = "\n[hints]\nmostly-unused = true\n"
    if hints in renamed:
        renamed = renamed.replace(hints, "\n")
    # Its tests are not copied: neither are their targets (`cargo fmt --all` reads them).
    renamed = re.sub(r'\[\[test\]\]\nname = "\w+"\npath = "tests/\w+\.rs"\n\n', "", renamed)
    (dest / "Cargo.toml").write_text(renamed)
    # Generated code, kept byte for byte: `cargo fmt --all` formats path dependencies too.
    (dest / "rustfmt.toml").write_text("disable_all_formatting = true\n")
    (dest / "VENDORED.md").write_text(
        f"# Pruned {src.name}\n\nWritten by `scripts/vendor-ec2.py` from crates.io's "
        f"{src.name} (sha256 {UPSTREAM_SHA256}), as the package `{PACKAGE}`: the official crate's files, with only these operations and the modules they reach "
        f"(the generated module lists and crate-wide per-operation items filtered to match):\n\n"
        + "".join(f"- `{op}`\n" for op in OPERATIONS)
        + "\nDo not edit: change OPERATIONS in the script and run it again.\n"
    )
    # Everything that is not per operation, type or shape is copied whole.
    per_unit = {"operation", "types", "protocol_serde", "waiters", "client"}
    for p in s.rglob("*.rs"):
        rel = p.relative_to(s)
        if rel.parts[0] in per_unit and len(rel.parts) > 1:
            continue
        (dest / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest / "src" / rel)
    for kind, name in sorted(keep):
        for p in files_of(kind, name):
            if p.exists():
                dst = dest / "src" / p.relative_to(s)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, dst)
    # Kept shape modules hold deserializers that no kept operation calls (one today:
    # `de_tag_specification`): dead code by construction, silenced so that no build shows it.
    lib = dest / "src" / "lib.rs"
    lib.write_text(
        "#![allow(dead_code)] // pruned by scripts/vendor-ec2.py: see VENDORED.md\n" + lib.read_text()
    )
    # The client's one shared module.
    shutil.copy(s / "client" / "customize.rs", dest / "src" / "client" / "customize.rs")
    shutil.copytree(s / "client" / "customize", dest / "src" / "client" / "customize")
    if (s / "types" / "error.rs").exists():
        shutil.copy(s / "types" / "error.rs", dest / "src" / "types" / "error.rs")
        if (s / "types" / "error").is_dir():
            shutil.copytree(s / "types" / "error", dest / "src" / "types" / "error")
    filter_file("operation.rs", kept["operation"])
    filter_file("client.rs", kept["operation"] | {"customize"})
    filter_file("types.rs", kept["types"] | {"builders", "error"})
    filter_file("types/builders.rs")
    filter_file("protocol_serde.rs", kept["protocol_serde"])
    filter_file("error_meta.rs")
    filter_file("serde_util.rs")
    filter_file("lens.rs")
    filter_file("waiters.rs", kept["waiters"])
    lines = sum(len(p.read_text().splitlines()) for p in (dest / "src").rglob("*.rs"))
    print(
        f"vendor-ec2: {src.name}: {len(kept['operation'])} operations, {len(kept['types'])} type modules, "
        f"{len(kept['protocol_serde'])} serde modules, {len(kept['waiters'])} waiters; {lines} lines in {dest}"
    )


if __name__ == "__main__":
    main()
