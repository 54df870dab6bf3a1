"""Routing: which calls a specialist answers, when it must hand them back, and the gates that decide.

- `gates`: promotion on held-out evidence, demotion on live evidence, every decision recorded;
- `calibrate`: the specialist's confidence threshold from its held-out calls, served the way the gateway serves;
- `router`: per request, the task, its route and the specialist's answer (or the reason to fall back).
"""
