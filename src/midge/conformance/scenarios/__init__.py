"""The conformance scenarios, one module per area ("sNN_area.py", ids "NN-MM").

Modules register their scenarios with `@scenario` when imported;
`midge.conformance.registry.all_scenarios` imports every module here.
"""
