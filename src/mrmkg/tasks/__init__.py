"""The tasks mrmkg trains and answers with: one folder per dataset (its loader, task and
metrics), what they share in ``base`` and ``knowledge``, the string-keyed ``registry``."""
