from oodpose.cli import main

main()
