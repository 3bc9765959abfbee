from storagectl.cli.main import main

main()
