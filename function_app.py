"""The Azure Functions app: builds the FunctionApp and registers the blueprints. Nothing else."""

import azure.functions as func

from functions import blueprints

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in blueprints():
    app.register_functions(blueprint)
