"""The sandbox guest: its sources (app/, wit/) and how to build them.

`app/` and `wit/` are data to the host: they run inside the component, never
in the host process. `build` turns them into a component with componentize-py.
"""
