"""The JobSpec on the command line: its fields' flags become click options (shared by `incv4 render` and
`incv4 submit`), and the flags' values become a validated JobSpec plus the recipe text. Both are generated from the
JobSpec dataclass, whose fields carry their flags (operator/spec.py `Flag`), so a new field needs no edit here."""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional, Tuple

import click

from incv4.operator.spec import DEFAULT_RECIPE, Flag, JobSpec


def flagged_fields() -> Iterator[Tuple[dataclasses.Field, Flag]]:
    """The JobSpec fields given on the command line, in `--help` order, with their flags."""
    for spec_field in dataclasses.fields(JobSpec):
        flag = spec_field.metadata.get("flag")
        if flag is not None:
            yield spec_field, flag


def _default(spec_field: dataclasses.Field):
    if spec_field.default is dataclasses.MISSING:
        return None  # a required field (--name, --image): JobSpec's check names it when missing
    return spec_field.default


def _click_option(spec_field: dataclasses.Field, flag: Flag):
    attrs = {"help": flag.help, "metavar": flag.metavar, "show_default": True}
    if flag.multiple:
        attrs["multiple"] = True  # a repeatable flag collects a tuple; the field's parser reads it
    else:
        attrs["default"] = _default(spec_field)
        attrs["type"] = click.Path(dir_okay=False) if flag.path else flag.type
    return click.option(*flag.decls, spec_field.name, **attrs)


def spec_options(fn):
    """Every flagged JobSpec field as a click option named after the field."""
    for spec_field, flag in reversed(list(flagged_fields())):
        fn = _click_option(spec_field, flag)(fn)
    return fn


def build(params: dict, namespace: Optional[str]) -> tuple:
    """Flags -> (JobSpec, recipe text), the recipe validated with its overrides before anything is rendered.
    Raises RecipeError or SpecError naming the problem."""
    from incv4.trainer import recipe as recipe_mod

    path = params["recipe"] or recipe_mod.shipped_path(DEFAULT_RECIPE)
    recipe = recipe_mod.load(path, params["recipe_overrides"])  # raises RecipeError naming the key
    with open(path, encoding="utf-8") as fh:
        recipe_text = fh.read()
    values = {}
    for spec_field, flag in flagged_fields():
        value = params[spec_field.name]
        values[spec_field.name] = flag.parse(value) if flag.parse else value
    job_spec = JobSpec(namespace=namespace or "default", **values)
    recipe_mod.check_world_size(recipe, job_spec.nodes * job_spec.npus)  # distribute: False on one NPU only
    return job_spec, recipe_text
