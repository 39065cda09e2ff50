from unitctl.cli import main

main()
