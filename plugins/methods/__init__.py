"""Built-in distillation methods: one module per method, registered through entry points like any plugin."""
