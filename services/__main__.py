from services.bootstrap.cli import app

app(prog_name="switchboard")
