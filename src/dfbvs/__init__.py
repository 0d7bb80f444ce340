"""dfbvs: Deep Feature-Based Visual Servoing.

Data flow, one module per stage (a module imports only from stages before it):
geometry -> camera -> render -> features -> matching -> estimation -> control -> servo -> sim -> bench
-> hardware -> cli
"""

__version__ = "0.1.0"
