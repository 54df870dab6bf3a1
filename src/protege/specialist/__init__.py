"""What a specialist is made of, below every pipeline that builds, evaluates or serves one.

`examples` (a task's calls as training examples), `format` (prompt formats and output kinds),
`artifact` (the self-describing specialist folder) and `base` (loading its base model). Training,
evaluation, routing and the flywheel all import these; nothing here imports them.
"""
