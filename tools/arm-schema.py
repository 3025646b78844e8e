#!/usr/bin/env python3
"""Extract the request models of one ARM api-version from Microsoft's generated Python SDK.

The emulator checks request bodies against Microsoft's published models, not against our
reading of them. The swagger files of Azure/azure-rest-api-specs cannot be fetched from this
machine, but PyPI serves the management SDKs AutoRest generates from those same swagger
files: each model class carries the swagger's property names (`_attribute_map`, with
`properties.x` for x-ms-client-flatten), required and read-only flags and constraints
(`_validation`), and its enums. This script reads them with `ast` (nothing of the SDK is
imported or run) and writes the models reachable from the given roots as JSON, with the
wheel's name, version and sha256.

    pip download --no-deps azure-mgmt-containerinstance==10.1.0
    python3 tools/arm-schema.py azure_mgmt_containerinstance-10.1.0-py3-none-any.whl \
        2023-05-01 ContainerGroup > src/rust/local/schemas/containerinstance-2023-05-01.json

A multi-api wheel (one package per api-version, e.g. azure-mgmt-authorization 4.0.0's
`v2022_04_01/`) is read from the given api-version's package; `--package` picks one of a
wheel's clients first (azure-mgmt-resource has several):

    python3 tools/arm-schema.py --package azure/mgmt/resource/resources \
        azure_mgmt_resource-23.1.1-py3-none-any.whl 2021-04-01 ResourceGroup
"""

import ast
import hashlib
import json
import re
import sys
import zipfile


def literal_dicts(cls):
    """The class's `_validation`, `_attribute_map` and `_subtype_map` (literal dicts in
    generated code), and its constants."""
    out = {}
    for node in cls.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("_validation", "_attribute_map", "_subtype_map"):
                out[target.id] = ast.literal_eval(node.value)
            elif isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
                # A constant property's value: `type = "Microsoft.ContainerRegistry/registries"`.
                out.setdefault("_constants", {})[target.id] = node.value.value
    return out


def enum_classes(tree):
    enums = {}
    for node in tree.body:
        # `class X(str, Enum, metaclass=...)`, or in older SDKs
        # `class X(with_metaclass(CaseInsensitiveEnumMeta, str, Enum))`.
        if isinstance(node, ast.ClassDef) and any(
            isinstance(n, ast.Name) and n.id == "Enum" for b in node.bases for n in ast.walk(b)
        ):
            values = [
                stmt.value.value
                for stmt in node.body
                if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ]
            enums[node.name] = values
    return enums


def enum_of_attributes(cls, enums):
    """`:vartype x: str or ~azure.mgmt....models.SomeEnum` names a property's enum."""
    doc = ast.get_docstring(cls) or ""
    found = {}
    for attr, spec in re.findall(r":vartype (\w+):\s*((?:[^:]|\n)*?)(?=\n\s*:|\Z)", doc):
        names = re.findall(r"~[\w.]+\.models\.(\w+)", spec)
        for name in names:
            if name in enums:
                found[attr] = name
    return found


def main():
    args = sys.argv[1:]
    package = None
    if args[0] == "--package":
        package, args = args[1], args[2:]
    wheel, api_version, *roots = args
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        # A multi-api wheel has one package per api-version (`v2022_04_01/`): take that one.
        folder = "/v" + re.sub(r"[-.]", "_", api_version) + "/"
        if package:
            names = [n for n in names if n.startswith(package.rstrip("/") + "/")]
        if any(folder in n for n in names):
            names = [n for n in names if folder in n]
        models_files = [n for n in names if re.search(r"/models/_models(_py3)?\.py$", n)]
        enum_files = [n for n in names if re.search(r"/models/_\w*enums\.py$", n)]
        if len(models_files) != 1:
            sys.exit(f"expected one models file in {wheel}, found {models_files}")
        models_tree = ast.parse(z.read(models_files[0]).decode())
        enums = {}
        for n in enum_files:
            enums.update(enum_classes(ast.parse(z.read(n).decode())))
        config = [n for n in names if n.endswith("/_configuration.py") and "/aio/" not in n]
        pinned = re.findall(r"""kwargs\.pop\(["']api_version["'], "([^"]+)"\)""", z.read(config[0]).decode())
    if api_version not in pinned:
        sys.exit(f"{wheel} is generated for api-version {pinned}, not {api_version}")

    classes = {n.name: n for n in models_tree.body if isinstance(n, ast.ClassDef)}
    models, used_enums = {}, set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in models or name not in classes:
            continue
        cls = classes[name]
        dicts = literal_dicts(cls)
        validation = dicts.get("_validation", {})
        enum_attrs = enum_of_attributes(cls, enums)
        fields = []
        for attr, spec in dicts.get("_attribute_map", {}).items():
            rule = validation.get(attr, {})
            field = {"key": spec["key"], "type": spec["type"]}
            for flag in ("required", "readonly"):
                if rule.get(flag):
                    field[flag] = True
            if rule.get("constant"):
                field["constant"] = dicts["_constants"][attr]
            constraints = {k: v for k, v in rule.items() if k not in ("required", "readonly", "constant")}
            if constraints:
                field["constraints"] = constraints
            if attr in enum_attrs:
                field["enum"] = enum_attrs[attr]
                used_enums.add(enum_attrs[attr])
            fields.append(field)
            todo.extend(re.findall(r"[A-Z]\w*", spec["type"]))
        model = {"fields": fields}
        if "_subtype_map" in dicts:
            model["subtypes"] = dicts["_subtype_map"]
            for sub in dicts["_subtype_map"].values():
                todo.extend(sub.values())
        models[name] = model

    json.dump(
        {
            "provenance": {
                "package": wheel.rsplit("/", 1)[-1].split("-")[0].replace("_", "-"),
                "wheel": wheel.rsplit("/", 1)[-1],
                "wheel_sha256": digest,
                "models_file": models_files[0],
                "api_version": api_version,
                "roots": roots,
                "generated_by": "tools/arm-schema.py",
            },
            "models": dict(sorted(models.items())),
            "enums": {k: enums[k] for k in sorted(used_enums)},
        },
        sys.stdout,
        indent=1,
        sort_keys=False,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
