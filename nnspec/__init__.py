"""nnspec: a declarative model-spec compiler."""
