"""Inspecting a run's logs: the reader (`log`: no torch or transformers import), the terminal inspector
(`inspector`, behind `grace-rl inspect`; `blocks`: its one-block-per-record layout for narrow terminals and pipes)
and the self-contained HTML report (`report`, behind `grace-rl report`; its CSS and JavaScript are package data in
`assets/`).

Kept import-light: `import grace_rl.inspection` loads nothing else.
"""
