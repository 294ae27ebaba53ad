"""cld_governance: who may send and see what (tenants, sources, operators, API keys) and with whom data may be
shared (the sharing policy, legal bases, opt-outs), as pure models and decisions (``tenancy``, ``sharing``), with
the file and environment loaders at its edge (``loaders``). Depends only on ``cld_schemas``."""
