"""``medkd-bench add-plugin``: scaffold a plugin that works at once, in the repository or as a package.

A contributor's first plugin should run before they change a line of it, so
the scaffold is a complete plugin (a timm model whose target layer was
checked on a real forward pass, a real synthetic dataset, a real grad-cam
explainer, a Hinton-KD-shaped distillation method) plus a test that runs the
conformance kit on it.

Two modes:

* repository (default): ``plugins/<kind>s/<module>.py`` and
  ``tests/plugins/test_<module>.py`` in the medkd-bench checkout, and an
  entry point line in its ``pyproject.toml``, the same way the built-ins are
  registered;
* ``--standalone DIR``: a pip-installable package ``DIR/medkd-<name>/``
  (``src/`` layout) declaring the same entry point.

:mod:`.request` validates the request, :mod:`.timm_probe` checks the model
and target layer on a real forward pass, :mod:`.render` renders the Jinja2
templates in ``templates/``, :mod:`.pyproject` edits the entry points,
:mod:`.plan` lays out the files and :mod:`.transaction` writes them all or
none; :func:`.api.scaffold` runs those steps in order.
"""
