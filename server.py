"""The console's web server: Streamlit running ``app.py`` (the router) plus the routes that set and clear the
session cookie of local accounts (issue 19 item 6, ``pages/session_routes.py``). ``./run.sh`` starts it as
``streamlit run server.py``; a plain ``streamlit run app.py`` works too, without sessions that survive a reload.

App code cannot set an HttpOnly cookie over Streamlit's websocket, so a page that has just signed someone in
sends the browser to one of these routes with a one-time code (``services.access.sessions``); the route answers
with the signed session cookie and sends the browser back to the page it came from.
"""

from __future__ import annotations

import os

import streamlit as st

from pages.session import COOKIE_ENV
from pages.session_routes import ROUTES

os.environ[COOKIE_ENV] = "on"  # the app hands sessions of local accounts to the routes below

app = st.App("app.py", routes=ROUTES)
