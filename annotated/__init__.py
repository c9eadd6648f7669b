# GENERATED FILE, DO NOT EDIT. It is exported from book/*.md
# by tools/export.py; change the chapter and run `make export` instead.
"""The annotated attention book as a package.

Modules and the chapters they come from:

    attention        book/01_attention.md
    translation      book/02_translation.md
    seq2seq          book/03_seq2seq.md
    bptt             book/04_bptt.md
    transformer      book/05_transformer.md
    vit              book/06_vit.md
    vit_analysis     book/07_vit_inside.md
    training         book/appendix_training.md
    plumbing         book/appendix_plumbing.md

An installed package has no book/ folder: the chapters are online at
    https://github.com/annotated-attention/annotated-attention-book/tree/main/book
"""

import importlib

__version__ = "0.1.0"
# _config.yml: where the book lives, and the branch its Colab links open
__repository__ = "https://github.com/annotated-attention/annotated-attention-book"
__branch__ = "main"
__all__ = [
    'attention',
    'translation',
    'seq2seq',
    'bptt',
    'transformer',
    'vit',
    'vit_analysis',
    'training',
    'plumbing',
]


def __getattr__(name: str):
    """Import a submodule on first use: `annotated.attention`."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
