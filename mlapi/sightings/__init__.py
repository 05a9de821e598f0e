"""The memory of faces seen: every face recognition sees is kept as a sighting (a small
picture, its faceprint, when, where and who sent it). Unknown faces are grouped into
clusters of one person as they arrive, so they can be named once; known faces build each
person's history.

quality.py: the gate a face must pass to be kept as unknown or become a sample.
clustering.py: which cluster an unknown face joins.
recorder.py: recording off the request path (a bounded queue and a writer thread).
naming.py: naming a cluster, correcting a recognition, and the listings every front end
(the API, the CLI, the console) shows.
settings.py: the settings (serve's options; the environment for the other commands).
"""
