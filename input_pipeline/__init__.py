"""Input pipeline: TFDS video builders and a random-access, multi-host video loader.

Importing the package registers the builders, so `tfds.builder('salient_fashion')` works.
"""

from input_pipeline import datasets  # noqa: F401
