"""Test helper: serve source modules' code from an image.

A minimal stand-in for the import tier (issue 3): the normal path finder
resolves the module, and when it resolves to the file the image holds for
that name, the loader takes the code from the image instead of the .pyc.
Used to run CPython's own test suites on image code.
"""
import importlib.machinery
import sys

import warmstart

served = set()


class ImageSourceLoader(importlib.machinery.SourceFileLoader):
    image = None

    def get_code(self, fullname):
        if fullname in self.image:
            info = self.image.info(fullname)
            if info["origin"] == self.path:
                code = self.image.get_code(fullname)
                served.add(fullname)
                return code
        return super().get_code(fullname)


class ImageFinder:
    def __init__(self, image):
        self.image = image
        self.loader = type("Loader", (ImageSourceLoader,), {"image": image})

    def find_spec(self, name, path=None, target=None):
        if name not in self.image:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = self.loader(spec.loader.name, spec.loader.path)
        return spec

    def invalidate_caches(self):
        pass


def install(path):
    img = warmstart.Image(path)
    sys.meta_path.insert(0, ImageFinder(img))
    return img
