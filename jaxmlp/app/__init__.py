"""The application: the ``jaxmlp`` command (``cli``, started by ``_entry``) and
``jaxmlp serve`` (``serve``, ``_pages`` and the page in ``web/``).

Built on the library (``jaxmlp``'s public names and its run folder); the library never
imports it.
"""
