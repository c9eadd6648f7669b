"""Start-up file of every notebook kernel in the book's build (its ``PYTHONSTARTUP``).

``tools/sphinx_annotated.py`` points ``PYTHONSTARTUP`` here before any kernel
starts; IPython runs the file in the kernel's own namespace, with this folder on
``sys.path`` while it runs. It switches altair to the book's offline renderer
(``tools/book_altair.py``) and leaves no name behind: a chapter must not work in
the book only because the build defined something for it.
"""

import book_altair as _book_altair

_book_altair.enable()
del _book_altair
