"""The ``.nn`` language: text -> syntax tree (``parse``, ``syntax``; the grammar is
``grammar/nnspec.lark``) -> IR (``lower``: names, constants, ``use``, blocks, arguments;
``trainlower`` for a train section), with ``--const`` values applied (``overrides``)."""
