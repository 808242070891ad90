"""The configuration: where it lives, how a command line is checked and composed, what it builds; and the
parsing room, where an entry point's config is read into typed objects, once.

Code outside this package receives those objects (``RunConfig``, the model's typed sections, ``EvalConfig``,
the validation split, ...) and never looks a key up by a path string or edits a config in place; a step
that needs a changed config gets a new one (``given.with_values``). Nothing is imported here, so that the
section readers low in the stack (``sections``) and the checks high in it (``preflight``) stay separate.
"""
