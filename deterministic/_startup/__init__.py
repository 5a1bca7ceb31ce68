"""The directory ``run`` puts on children's ``PYTHONPATH``: its ``sitecustomize`` seeds them."""
