"""Runs the IIIF Image API validator's command-line script with the `magic` interface it calls.

Usage: python3 iiif-validate.py <validator checkout> <arguments of its iiif-validate.py>

Its jp2 and pdf checks open `magic.Magic()` as a context manager and call `id_buffer`, the
interface of the `filemagic` package; the package it declares, python-magic (Debian's
python3-magic), names that call `from_buffer` and has no context manager, so both checks would
end in an AttributeError before looking at the server's answer. The same libmagic description
comes back either way.
"""
import runpy
import sys

import magic

if not hasattr(magic.Magic, "id_buffer"):

    class FileMagicInterface(magic.Magic):
        def __enter__(self):
            return self

        def __exit__(self, *exception):
            return False

        def id_buffer(self, data):
            return self.from_buffer(data)

    magic.Magic = FileMagicInterface

checkout = sys.argv[1]
sys.path.insert(0, checkout)
sys.argv = [checkout + "/iiif-validate.py"] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
