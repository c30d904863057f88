"""kroute's configuration: typed models, validation with messages that name the field,
and the generated reference (docs/configuration.md).

Entry points: `model.load_config` / `model.parse_config` and `model.Config`; the
sections live in `peers`, `datapath`, `stores`, `logging_setup` and `types`;
`reference` (the table docs/configuration.md is generated from).
"""
