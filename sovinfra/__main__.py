from sovinfra.cli import main

main()
