#!/usr/bin/env python3
"""Converts FHIR STU3 XML resources to FHIR's JSON representation.

The JSON fixtures under events/ are produced by this script, never edited by
hand. Which elements are arrays, booleans or numbers comes from the STU3
models of the fhir.resources package (the published StructureDefinitions), so
the output follows the specification's JSON rules:
  - a resource carries "resourceType"; `<resource><Patient>` becomes an object;
  - a repeating element is an array even with one item;
  - a primitive's `value` attribute becomes the JSON value, its id and
    extensions go to the `_name` sibling;
  - XHTML narrative becomes a string.

Usage: fhir_xml_to_json.py INPUT.xml [OUTPUT.json]   (stdout without OUTPUT)
"""

import decimal
import json
import sys
import typing
import xml.etree.ElementTree as ET

from fhir.resources.STU3 import get_fhir_model_class

FHIR_NS = "{http://hl7.org/fhir}"
XHTML_NS = "{http://www.w3.org/1999/xhtml}"


class ConversionError(Exception):
    pass


def local(tag):
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def unwrap(annotation):
    """(is_list, inner type) of a pydantic field annotation."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
            annotation = args[0]
        elif origin is list:
            is_list = True
            annotation = args[0]
        elif origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        else:
            return is_list, annotation


def model_for(abstract):
    name = getattr(abstract, "__name__", "")
    if name.endswith("Type") and name not in ("ResourceType",):
        try:
            return get_fhir_model_class(name[: -len("Type")])
        except (KeyError, ValueError):
            return None
    return None


def primitive_json(python_type, text, path):
    if python_type is bool:
        if text not in ("true", "false"):
            raise ConversionError(f"{path}: '{text}' is not a boolean")
        return text == "true"
    if python_type is int:
        return int(text)
    if python_type is decimal.Decimal:
        number = decimal.Decimal(text)
        return int(number) if number == number.to_integral_value() and "." not in text else float(text)
    return text


def convert_resource(element, path):
    resource_type = local(element.tag)
    model = get_fhir_model_class(resource_type)
    result = {"resourceType": resource_type}
    result.update(convert_children(element, model, f"{path}{resource_type}"))
    return result


def convert_children(element, model, path):
    # Elements named after Python keywords (Task.for, DocumentReference.class)
    # are model fields with a FHIR alias.
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    out = {}
    extras = {}
    for attribute, value in element.attrib.items():
        if attribute in ("id", "url"):
            out[attribute] = value
    groups = {}
    for child in element:
        if not isinstance(child.tag, str):
            continue
        groups.setdefault(local(child.tag), []).append(child)
    for name, children in groups.items():
        field = fields.get(name)
        if field is None:
            raise ConversionError(f"{path}.{name}: not an element of {model.__name__}")
        is_list, inner = unwrap(field.annotation)
        if not is_list and len(children) > 1:
            raise ConversionError(f"{path}.{name}: repeats but has cardinality 0..1")
        values, value_extras = [], []
        for child in children:
            child_path = f"{path}.{name}"
            if name == "div":
                values.append(ET.tostring(child, encoding="unicode").strip())
                value_extras.append(None)
                continue
            if name in ("resource", "contained"):
                resources = [c for c in child if isinstance(c.tag, str)]
                if len(resources) != 1:
                    raise ConversionError(f"{child_path}: must hold exactly one resource")
                values.append(convert_resource(resources[0], f"{child_path}."))
                value_extras.append(None)
                continue
            child_model = model_for(inner)
            if child_model is not None:
                values.append(convert_children(child, child_model, child_path))
                value_extras.append(None)
                continue
            # A primitive: value attribute, plus optional id and extensions.
            value = child.attrib.get("value")
            values.append(None if value is None else primitive_json(inner, value, child_path))
            extra = {}
            if "id" in child.attrib:
                extra["id"] = child.attrib["id"]
            extensions = [convert_children(e, get_fhir_model_class("Extension"), f"{child_path}.extension")
                          for e in child if isinstance(e.tag, str) and local(e.tag) == "extension"]
            if extensions:
                extra["extension"] = extensions
            value_extras.append(extra or None)
        if is_list:
            if any(v is not None for v in values):
                out[name] = values
            if any(e is not None for e in value_extras):
                extras["_" + name] = value_extras
        else:
            if values[0] is not None:
                out[name] = values[0]
            if value_extras[0] is not None:
                extras["_" + name] = value_extras[0]
    out.update(extras)
    return out


def convert(xml_text):
    root = ET.fromstring(xml_text)
    if not root.tag.startswith(FHIR_NS):
        raise ConversionError("the root element is not in the FHIR namespace")
    return convert_resource(root, "")


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as source:
        resource = convert(source.read())
    text = json.dumps(resource, indent=2, ensure_ascii=False) + "\n"
    if len(argv) == 3:
        with open(argv[2], "w", encoding="utf-8") as target:
            target.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
