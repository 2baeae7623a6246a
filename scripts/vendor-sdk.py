#!/usr/bin/env python3
"""Writes vendor/aws-sdk-<service>: an official aws-sdk-* crate (the version and checksum below, from
crates.io), with only the operations this project calls and the code they reach, as the package
`platform-aws-sdk-<service>` (its library keeps its name, e.g. `aws_sdk_ec2`).

Why: each aws-sdk-* crate is generated code for every operation of its service (aws-sdk-ec2: 1.2
million lines for ~800 operations; aws-sdk-iam, -ecs, -cloudwatchlogs, -s3: 170,000 to 250,000 lines
for 88 to 180), while the platform calls 8 to 37 operations of each. On this project's 2-core machines
they were most of a cold build. The kept files are copied unchanged; only the generated module lists
(`mod x;`, `pub use ..`) and the per-operation items of the crate-wide files (`error_meta.rs`,
`lens.rs`, ...) are filtered, and the package is renamed. The workspace depends on each by path under
that name (`aws-sdk-ec2 = { package = "platform-aws-sdk-ec2", path = ... }`), so a project that depends
on the stacks from git or by path builds the same pruned crates, not the registry's.

To upgrade a service: set its version and sha256 in SERVICES (the `cksum` of that version in
https://index.crates.io/aw/s-/aws-sdk-<service>, also in Cargo.lock) and run this script. To call a new
operation: add it to the service's operations and run it again. CI runs `--check`: the script must
reproduce vendor/ byte for byte.

    python3 scripts/vendor-sdk.py                  # writes every vendor/aws-sdk-*
    python3 scripts/vendor-sdk.py ec2 s3           # writes those
    python3 scripts/vendor-sdk.py --check          # compares what it would write with vendor/
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

# Per service: the official crate's version and .crate sha256, and every operation of it that the
# workspace calls (resources, suites, benchmarks, the downstream check), snake_case.
SERVICES = {
    "ec2": (
        "1.274.0",
        "13e3f0815e4ac74946498e34064459dbae1efb7ec174cce6ed444f50f82a0a73",
        """
        associate_route_table attach_internet_gateway authorize_security_group_egress
        authorize_security_group_ingress create_internet_gateway create_route create_route_table
        create_security_group create_subnet create_tags create_vpc delete_internet_gateway delete_route
        delete_route_table delete_security_group delete_subnet delete_tags delete_vpc
        describe_availability_zones describe_internet_gateways describe_route_tables
        describe_security_groups describe_subnets describe_vpc_attribute describe_vpcs
        detach_internet_gateway disassociate_route_table modify_subnet_attribute modify_vpc_attribute
        replace_route replace_route_table_association revoke_security_group_egress
        revoke_security_group_ingress
        """,
    ),
    "iam": (
        "1.133.0",
        "82ab4991432729c78f60771c6d2d30a87d72e87819faca479bb2bc9ee89f2213",
        """
        add_role_to_instance_profile attach_role_policy create_instance_profile create_policy
        create_policy_version create_role delete_instance_profile delete_policy delete_policy_version
        delete_role delete_role_policy detach_role_policy get_instance_profile get_policy
        get_policy_version get_role list_attached_role_policies list_instance_profiles
        list_instance_profiles_for_role list_policies list_policy_tags list_policy_versions
        list_role_policies list_role_tags list_roles put_role_policy remove_role_from_instance_profile
        tag_instance_profile tag_policy tag_role untag_instance_profile untag_policy untag_role
        update_assume_role_policy update_role
        """,
    ),
    "ecs": (
        "1.157.0",
        "dd9803fbcd4e37bfc9cafb3a7efb94a13a18a9b95138d79bc6d440f3fda59c15",
        """
        create_cluster create_service delete_cluster delete_service deregister_task_definition
        describe_clusters describe_services describe_task_definition describe_tasks list_clusters
        list_services list_tags_for_resource list_task_definitions list_tasks register_task_definition
        tag_resource untag_resource update_cluster_settings update_service
        """,
    ),
    "cloudwatchlogs": (
        "1.162.0",
        "25363e1a2f00e2b0f1c4e509566e26569ca1ed258433ff99b7f428ce4f1f0866",
        """
        create_log_group delete_log_group delete_retention_policy describe_log_groups
        list_tags_for_resource put_retention_policy tag_resource untag_resource
        """,
    ),
    "s3": (
        "1.157.0",
        "6ea9794c741520d8baec9462bcd0ad12164d4f5f78d008a8da9d6a0b7222caa8",
        """
        copy_object create_bucket delete_bucket delete_object get_bucket_versioning get_object
        head_bucket head_object list_object_versions list_objects_v2 put_bucket_versioning put_object
        create_session
        """,  # create_session: called by the crate's own S3 Express support (s3_express.rs)
    ),
    "elasticloadbalancingv2": (
        "1.134.0",
        "9c0d9dbd0986fb7e2530f26edd37ea4e32d42835d7dd8ce41fedb2570caf837d",
        """
        add_tags create_listener create_load_balancer create_rule create_target_group
        delete_listener delete_load_balancer delete_rule delete_target_group describe_listeners
        describe_load_balancer_attributes describe_load_balancers describe_rules describe_tags
        describe_target_group_attributes describe_target_groups describe_target_health
        modify_listener modify_load_balancer_attributes modify_rule modify_target_group
        modify_target_group_attributes remove_tags set_security_groups set_subnets
        """,
    ),
    "applicationautoscaling": (
        "1.127.0",
        "5ee243237271395df9386070479b3c1965b4350991744dcef69c9cc3224845fd",
        """
        delete_scaling_policy deregister_scalable_target describe_scalable_targets
        describe_scaling_policies put_scaling_policy register_scalable_target
        """,
    ),
}

ROOT = Path(__file__).resolve().parent.parent


def upstream_source(service: str, scratch: Path) -> Path:
    """The official crate's sources: the cargo registry's copy when there is one, else the .crate
    downloaded from crates.io into `scratch` and checked against its sha256."""
    version, sha256, _ = SERVICES[service]
    name = f"aws-sdk-{service}-{version}"
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(home.glob(f"registry/src/*/{name}"))
    if found:
        return found[0]
    url = f"https://static.crates.io/crates/aws-sdk-{service}/{name}.crate"
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"vendor-sdk: {url} has sha256 {digest}, expected {sha256}")
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
    args = sys.argv[1:]
    check = "--check" in args
    services = [a for a in args if a != "--check"] or list(SERVICES)
    unknown = [a for a in services if a not in SERVICES]
    if unknown:
        sys.exit(f"vendor-sdk: unknown service {unknown}; known: {', '.join(SERVICES)}")
    failed = []
    for service in services:
        out = ROOT / "vendor" / f"aws-sdk-{service}"
        scratch = Path(tempfile.mkdtemp(prefix=f"vendor-{service}-"))
        try:
            write(service, upstream_source(service, scratch), scratch / "out" if check else out)
            if check:
                diff = differences(scratch / "out", out)
                if diff:
                    failed.append(f"vendor/aws-sdk-{service} is not what the script writes:\n" + "\n".join(diff))
                else:
                    print(f"vendor-sdk: vendor/aws-sdk-{service} is what the script writes from aws-sdk-{service} {SERVICES[service][0]}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        sys.exit("vendor-sdk: " + "\n".join(failed))


def write(service: str, src: Path, dest: Path) -> None:
    _, sha256, operation_list = SERVICES[service]
    operations = sorted(operation_list.split())
    package = f"platform-aws-sdk-{service}"
    library = f"aws_sdk_{service}"
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

    # Files copied whole (not per operation, type or shape, nor filtered below) are roots too: what
    # they name must be kept (S3's express sessions call `create_session`, its client customizations
    # name `upload_part`, its event streams their types).
    per_unit = {"operation", "types", "protocol_serde", "waiters", "client"}
    filtered = {"operation.rs", "client.rs", "types.rs", "protocol_serde.rs", "error_meta.rs",
                "serde_util.rs", "lens.rs", "waiters.rs", "types/builders.rs", "type_registry.rs",
                "error_type_registry.rs"}
    whole = [p for p in sorted(s.rglob("*.rs"))
             if not (p.relative_to(s).parts[0] in per_unit and len(p.relative_to(s).parts) > 1)
             and p.relative_to(s).as_posix() not in filtered]
    whole += sorted((s / "client").glob("customize*.rs")) + sorted((s / "client" / "customize").rglob("*.rs"))
    whole += sorted((s / "types").glob("error.rs")) + sorted((s / "types" / "error").rglob("*.rs"))
    keep: set[tuple[str, str]] = set()
    todo = [("operation", op) for op in operations]
    for p in whole:
        code = "".join(l for l in p.read_text().splitlines(keepends=True) if not l.lstrip().startswith("//"))
        todo.extend(refs_in(code))
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
        if not (s / rel).exists():
            return
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
    renamed = manifest.replace(f'\nname = "aws-sdk-{service}"\n', f'\nname = "{package}"\n', 1)
    if renamed == manifest or f'[lib]\nname = "{library}"' not in renamed:
        sys.exit(f"vendor-sdk: the upstream Cargo.toml of aws-sdk-{service} does not name its package and library as expected")
    # `[hints]` is for registry crates; on a path dependency stable cargo warns it ignores it, a
    # warning every build of every user would show.
    hints = "\n[hints]\nmostly-unused = true\n"
    if hints in renamed:
        renamed = renamed.replace(hints, "\n")
    # Its tests are not copied: neither are their targets (`cargo fmt --all` reads them).
    renamed = re.sub(r'\[\[test\]\]\nname = "[\w-]+"\npath = "tests/[\w-]+\.rs"\n\n', "", renamed)
    (dest / "Cargo.toml").write_text(renamed)
    # Generated code, kept byte for byte: `cargo fmt --all` formats path dependencies too.
    (dest / "rustfmt.toml").write_text("disable_all_formatting = true\n")
    (dest / "VENDORED.md").write_text(
        f"# Pruned {src.name}\n\nWritten by `scripts/vendor-sdk.py` from crates.io's "
        f"{src.name} (sha256 {sha256}), as the package `{package}`: the official crate's files, with only these operations and the modules they reach "
        f"(the generated module lists and crate-wide per-operation items filtered to match):\n\n"
        + "".join(f"- `{op}`\n" for op in operations)
        + "\nDo not edit: change the service's operations in the script's SERVICES and run it again.\n"
    )
    # Everything that is not per operation, type or shape is copied whole.
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
        "#![allow(dead_code)] // pruned by scripts/vendor-sdk.py: see VENDORED.md\n" + lib.read_text()
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
    # Schema-based crates (aws-sdk-ecs) register every shape in one builder chain: the entries of
    # shapes not kept are left out.
    for rel in ("type_registry.rs", "error_type_registry.rs"):
        if not (s / rel).exists():
            continue
        entries = re.split(r"(?m)^(?=\s*\.insert_(?:error_)?shape\()", (s / rel).read_text())
        head, body = entries[0], entries[1:]
        if body:
            last = body[-1]
            m = re.search(r"\n\s*\.build\(\)", last)
            end = m.start() if m else len(last)
            tail = last[end:]
            body[-1] = last[:end]
        else:
            tail = ""
        (dest / "src" / rel).write_text(head + "".join(e for e in body if wanted(e)) + tail)
    lines = sum(len(p.read_text().splitlines()) for p in (dest / "src").rglob("*.rs"))
    print(
        f"vendor-sdk: {src.name}: {len(kept['operation'])} operations, {len(kept['types'])} type modules, "
        f"{len(kept['protocol_serde'])} serde modules, {len(kept['waiters'])} waiters; {lines} lines in {dest}"
    )


if __name__ == "__main__":
    main()
