from services.cli import app

app(prog_name="switchboard")
