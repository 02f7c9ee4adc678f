from services.bootstrap.cli import main

main()
