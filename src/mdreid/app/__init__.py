"""The local search page over a gallery index: ``engine`` searches and explains (no UI), ``page`` is the
Gradio page, ``cli`` is ``python -m mdreid.app INDEX``. Needs the ``app`` extra (``pip install mdreid[app]``).
"""
