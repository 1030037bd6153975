from carsctl.app import main

main()
