"""The API surface: controllers, actions and their HTTP routes, core and plugin ones alike."""

from .base import Action, ApiTable, Controller, HttpRoute, controller

__all__ = ["Action", "ApiTable", "Controller", "HttpRoute", "controller"]
